using System.Net;
using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Options;
using EphemeralOrleans.Contracts.Validation;
using EphemeralOrleans.Grains.Common;
using EphemeralOrleans.Grains.Events;
using EphemeralOrleans.Grains.Sessions;
using EphemeralOrleans.Grains.Telemetry;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Configuration;

namespace EphemeralOrleans.Grains.Nodes;

/// <summary>
/// One device and its lifecycle. An ephemeral node's removal runs on two clocks: a grain timer for precision (at its
/// deadline while it is offline, every <see cref="EphemeralOptions.CheckInterval"/> while its sessions need watching),
/// and an Orleans reminder (registered before the node exists durably) that reactivates the grain after a deactivation
/// or a silo failure, so no removal is ever lost.
/// </summary>
public sealed partial class NodeGrain(
    [PersistentState("node", StorageNames.State)] IPersistentState<NodeState> node,
    IGrainFactory grains,
    AuditLog auditLog,
    IOptions<EphemeralOptions> ephemeralOptions,
    AddressPool pool,
    Sessions.ConnectedNodes connectedNodes,
    IOptions<ReminderOptions> reminderOptions,
    TimeProvider time,
    ILogger<NodeGrain> logger) : Grain, INodeGrain, IRemindable, IIncomingGrainCallFilter
{
    private const string ReminderName = "lifecycle";
    private const int RandomAttempts = 32;
    private const long ScanLimit = 1 << 16;
    private static readonly TimeSpan MinimumCheckDelay = TimeSpan.FromMilliseconds(10);

    private readonly EphemeralOptions _options = ephemeralOptions.Value;

    private readonly NodeSessions _sessions = new();

    private IGrainTimer? _checkTimer;

    /// <summary>The moment the armed check timer fires (a deadline, or when sessions must be confirmed); null when there is none.</summary>
    private DateTimeOffset? _checkAt;
    private (string NodeId, uint Ipv4)? _acquiring;

    private NodeState State => node.State;

    private bool Exists => State.NodeId is not null && State.Removing is null;

    private bool Online => _sessions.Online;

    /// <summary>When an offline ephemeral node is removed: its last connect or disconnect plus the timeout.</summary>
    private DateTimeOffset Deadline => State.LastSeen + _options.InactivityTimeout;

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (!Exists)
        {
            return;
        }

        if (State.Connected)
        {
            // It was online when its grain went away: the leases of its gateways say which sessions stand. A lease that
            // cannot tell yet (restarted with its silo) gets one lease's time to be restored by its gateway.
            var now = time.GetUtcNow();
            _sessions.UnconfirmedUntil = now + _options.SessionLease;
            if (await ConfirmAsync(final: false))
            {
                _sessions.UnconfirmedUntil = null;
            }

            if (!Online)
            {
                await GoOfflineAsync(now);
            }
        }

        ScheduleChecks();
        State.Name = await AnnounceAsync();
    }

    /// <summary>After every call, whatever it changed: the check timer the node needs now, and whether this silo counts
    /// the node among its connected ones (see <see cref="Sessions.SessionConfirmer"/>).</summary>
    public async Task Invoke(IIncomingGrainCallContext context)
    {
        try
        {
            await context.Invoke();
        }
        finally
        {
            ScheduleChecks();
            TrackConnected();
        }
    }

    private void TrackConnected() => connectedNodes.Set(this.GetPrimaryKeyString(), _sessions.Count > 0);

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        connectedNodes.Set(this.GetPrimaryKeyString(), false);
        return Task.CompletedTask;
    }

    public async Task<RegisterResult> Register(RegisterCommand command)
    {
        if (State.Removing is not null)
        {
            await FinishRemovalAsync();
        }

        if (State.NodeId is not null)
        {
            return await ReissueTokenAsync(command);
        }

        var nodeId = command.NewNodeId is { } given && NodeIds.TryGrainKey(given, out var key) && key == this.GetPrimaryKeyString()
            ? given
            : NodeIds.NewNodeId(this.GetPrimaryKeyString());
        var tailnet = command.Grant.Tailnet;
        var ephemeral = command.Ephemeral || command.Grant.Ephemeral;
        var settings = grains.GetGrain<ITailnetGrain>(tailnet).GetSettings();

        // The reminder exists before the node does, so a crash at any later step still ends in a clean-up.
        var reminder = ephemeral ? EnsureReminderAsync(_options.InactivityTimeout) : Task.CompletedTask;
        uint ipv4;
        try
        {
            ipv4 = await AcquireAddressAsync(tailnet, nodeId);
            await reminder;
        }
        catch (ControlPlaneException exception)
        {
            // The pool is exhausted: nothing was taken.
            _acquiring = null;
            await reminder;
            await DropReminderAsync();
            return new RegisterResult(null, null, exception.Failure);
        }
        catch
        {
            // A lease taken by now names a node that will not exist (reclaimable), and the reminder finds no node.
            _acquiring = null;
            throw;
        }

        var secret = Secrets.Base62(43);
        var now = time.GetUtcNow();
        node.State = new NodeState
        {
            NodeId = nodeId,
            Tailnet = tailnet,
            NodeKey = command.NodeKey,
            Hostname = command.Hostname,
            Ipv4 = ipv4,
            Ephemeral = ephemeral,
            Tags = command.Grant.Tags,
            Authorized = command.Grant.Preauthorized || !(await settings).DeviceApproval,
            Created = now,
            KeyId = command.Grant.KeyId,
            Subject = command.Grant.Subject,
            TokenHash = Secrets.Hash(secret),
            LastSeen = now,
            LastProofAt = command.ProvenAt,
            LastRegistrationId = command.RequestId,
            LastRegistrationAttempt = command.Attempt,
        };
        // The registry entry (and the node's name) is written alongside the node's own state; should this grain's
        // silo die in between, the registry drops the entry when it finds no such node (see TailnetGrain).
        var announced = AnnounceAsync();
        try
        {
            await node.WriteStateAsync();
        }
        catch
        {
            node.State = new NodeState();
            await UndoRegistrationQuietlyAsync(tailnet, ipv4, nodeId, announced);
            throw;
        }
        finally
        {
            _acquiring = null;
        }

        State.Name = await announced;
        await Tailnet().Confirm(nodeId);
        LogRegistered(nodeId, tailnet, State.Name, AddressPool.FormatIpv4(ipv4), ephemeral, command.Grant.KeyId);
        await RecordAsync(Event(EventTypes.NodeRegistered, EventActors.Credential(command.Grant.KeyId), new
        {
            name = State.Name, hostname = State.Hostname, ip = AddressPool.FormatIpv4(ipv4), ephemeral, tags = State.Tags,
            key = command.Grant.KeyId, subject = State.Subject, authorized = State.Authorized,
        }));
        SiloMetrics.Registered(ephemeral, again: false);
        return new RegisterResult(Entry(), $"{nodeId}.{secret}", null);
    }

    public async Task<SessionInfo?> OpenSession(string nodeId, string tokenSecret, string streamId, string leaseId)
    {
        if (!IsCurrent(nodeId) || State.LoggedOut || !Secrets.Matches(tokenSecret, State.TokenHash))
        {
            return null;
        }

        // Held first: from here on, the gateway's death reaches this node through its lease.
        await Lease(leaseId).Hold(nodeId, streamId);
        try
        {
            await AddSessionsAsync(leaseId, [streamId]);
        }
        catch
        {
            _sessions.Close(streamId);
            await Lease(leaseId).Release(streamId);
            throw;
        }

        return new SessionInfo(Entry(), State.SessionEpoch);
    }

    public async Task CloseSession(string streamId, string leaseId)
    {
        var now = time.GetUtcNow();
        if (_sessions.Close(streamId) && !Online && Exists && State.Connected)
        {
            await GoOfflineAsync(now);
        }

        // After the local close, so that a restart in between cannot take the stream back from the lease.
        await Lease(leaseId).Release(streamId);
    }

    public async Task SessionsLapsed(string leaseId, DateTimeOffset since)
    {
        State.SessionHosts = State.SessionHosts.Where(host => host != leaseId).ToArray();
        // With none left the node went offline at 'since', or when the last of them opened, if later (never earlier
        // than a sign of life).
        if (_sessions.CloseHeldBy(leaseId) is { } lastOpened && !Online && Exists && State.Connected)
        {
            await GoOfflineAsync(lastOpened > since ? lastOpened : since);
        }
    }

    public async Task Reattach(string leaseId, ValueList<string> streamIds)
    {
        if (Exists && !State.LoggedOut)
        {
            await AddSessionsAsync(leaseId, streamIds.Where(id => !_sessions.Contains(id)).ToArray());
        }
    }

    public async Task ConfirmSessions()
    {
        if (_sessions.Count == 0 || !Exists)
        {
            return;
        }

        var now = time.GetUtcNow();
        if (!await ConfirmAsync(final: false))
        {
            _sessions.UnconfirmedUntil ??= now + _options.SessionLease;
        }

        if (!Online && State.Connected)
        {
            await GoOfflineAsync(now);
        }
    }

    public async Task<bool> Logout(string nodeId, string tokenSecret, bool agentExit)
    {
        if (!IsCurrent(nodeId) || State.LoggedOut || !Secrets.Matches(tokenSecret, State.TokenHash))
        {
            return false;
        }

        await LogOutAsync(nodeId, agentExit ? RemovalReason.AgentExit : RemovalReason.Logout, EventActors.Node(nodeId));
        return true;
    }

    public Task<NodeEntry?> Authenticate(string nodeId, string tokenSecret) =>
        Task.FromResult(IsCurrent(nodeId) && !State.LoggedOut && Secrets.Matches(tokenSecret, State.TokenHash) ? Entry() : null);

    public async Task<bool> Expire(string nodeId)
    {
        if (!IsCurrent(nodeId))
        {
            return false;
        }

        if (!State.LoggedOut)
        {
            await LogOutAsync(nodeId, RemovalReason.Expired, EventActors.Current);
        }

        return true;
    }

    public async Task<RenameResult?> Rename(string nodeId, string name)
    {
        if (!IsCurrent(nodeId))
        {
            return null;
        }

        // The tailnet owns names (unique there); the node keeps a copy, corrected at its next upsert should this
        // call stop between the two writes.
        var outcome = await Tailnet().Rename(nodeId, name);
        if (outcome == RenameOutcome.Renamed && State.Name != name)
        {
            var previous = State.Name;
            State.Name = name;
            await node.WriteStateAsync();
            await RecordAsync(Event(EventTypes.NodeRenamed, EventActors.Current, new { from = previous, to = name }));
        }

        return new RenameResult(outcome, Entry());
    }

    /// <summary>Ends the node's token and sessions: an ephemeral node goes, another stays listed as logged out.</summary>
    private async Task LogOutAsync(string nodeId, RemovalReason reason, string actor)
    {
        if (State.Ephemeral)
        {
            await RemoveAsync(reason, actor);
            return;
        }

        _sessions.Clear();
        State.SessionHosts = [];
        State.LoggedOut = true;
        State.TokenHash = null;
        State.SessionEpoch++;
        State.Connected = false;
        State.LastSeen = time.GetUtcNow();
        await SaveAndAnnounceAsync();
        LogLoggedOut(nodeId);
        await RecordAsync(Event(reason == RemovalReason.Expired ? EventTypes.NodeExpired : EventTypes.NodeLoggedOut, actor,
            new { name = State.Name, reason = reason.Name() }));
    }

    public async Task<NodeEntry?> SetEndpoints(string nodeId, string tokenSecret, ValueList<IPEndPoint> endpoints)
    {
        if (!IsCurrent(nodeId) || State.LoggedOut || !Secrets.Matches(tokenSecret, State.TokenHash))
        {
            return null;
        }

        if (!endpoints.SequenceEqual(State.Endpoints))
        {
            State.Endpoints = endpoints.ToArray();
            CountAsActivity();
            await SaveAndAnnounceAsync();
        }

        return Entry();
    }

    public async Task<bool> Delete(string nodeId)
    {
        if (!IsCurrent(nodeId))
        {
            return false;
        }

        await RemoveAsync(RemovalReason.Admin, EventActors.Current);
        return true;
    }

    public async Task<NodeEntry?> Approve(string nodeId)
    {
        if (!IsCurrent(nodeId))
        {
            return null;
        }

        if (!State.Authorized)
        {
            State.Authorized = true;
            await SaveAndAnnounceAsync();
            await RecordAsync(Event(EventTypes.NodeApproved, EventActors.Current, new { name = State.Name }));
        }

        return Entry();
    }

    public Task<NodeEntry?> GetEntry(string nodeId) => Task.FromResult(IsCurrent(nodeId) ? Entry() : null);

    public Task<bool> HoldsAddress(string nodeId, uint ipv4) =>
        Task.FromResult((IsCurrent(nodeId) && State.Ipv4 == ipv4) || _acquiring == (nodeId, ipv4));

    public async Task ReceiveReminder(string reminderName, TickStatus status)
    {
        if (State.NodeId is null)
        {
            // A registration that crashed before the node was stored, or a removal that finished: nothing to guard.
            await DropReminderAsync();
            DeactivateOnIdle();
            return;
        }

        await CheckAsync(CancellationToken.None);
    }

    private async Task CheckAsync(CancellationToken cancellationToken)
    {
        if (State.Removing is not null)
        {
            await FinishRemovalAsync();
            return;
        }

        if (!Exists)
        {
            return;
        }

        var now = time.GetUtcNow();
        if (_sessions.UnconfirmedUntil is { } until && now >= until)
        {
            // What the leases cannot confirm by now is over: the latest moment it could still have been open is now.
            _sessions.UnconfirmedUntil = null;
            await ConfirmAsync(final: true);
            if (!Online && State.Connected)
            {
                await GoOfflineAsync(until);
            }
        }

        if (State.Ephemeral && !Online && now >= Deadline)
        {
            LogInactive(State.NodeId!, now - State.LastSeen, now - Deadline);
            SiloMetrics.RemovedLate(now - Deadline);
            await RemoveAsync(RemovalReason.Inactivity, EventActors.System);
        }

        // Re-arms whatever the check changed or left to do (a deadline that moved, or one a timer reached early).
        ScheduleChecks();
    }

    /// <summary>
    /// Registering a node key that already has a node hands that node over, so the caller must show it is the node's
    /// own agent: a registration proof later than any this node accepted (the agent holds the private key), or the
    /// node's current token. Node keys are public (every peer's netmap has them); a key alone gets nothing. A refusal
    /// changes nothing: the node, its token and its streams stay as they are. Once proven, the registration is the
    /// new key's: its id, tags and pre-authorization apply (an approval already given stays).
    /// </summary>
    private async Task<RegisterResult> ReissueTokenAsync(RegisterCommand command)
    {
        if (State.NodeKey != command.NodeKey || State.Tailnet != command.Grant.Tailnet)
        {
            // 80 bits of hash collided; refuse rather than hand over another device.
            return new RegisterResult(null, null, Failure.Forbidden("node_key_conflict", "This node key cannot be registered."));
        }

        // The gateway retrying this very registration (a silo failed before it got the answer): the caller showed
        // possession the first time; it gets a new token, as the lost answer's is unknown to anyone.
        var retried = command.RequestId is not null && command.RequestId == State.LastRegistrationId;
        if (retried && command.Attempt <= State.LastRegistrationAttempt)
        {
            // An attempt the gateway gave up on, arriving late: the later one's answer (and token) stands.
            return new RegisterResult(null, null, Failure.Conflict("registration_superseded", "A later attempt of this registration was answered; this one changes nothing."));
        }

        if (!retried && PossessionFailure(command) is { } refused)
        {
            LogTakeoverRefused(State.NodeId!, command.Grant.KeyId, refused.Code);
            return new RegisterResult(null, null, refused);
        }

        var previousKey = State.KeyId;
        var secret = Secrets.Base62(43);
        State.TokenHash = Secrets.Hash(secret);
        State.SessionEpoch++;
        State.LoggedOut = false;
        State.LastProofAt = command.ProvenAt ?? State.LastProofAt;
        State.KeyId = command.Grant.KeyId;
        State.Subject = command.Grant.Subject;
        State.Tags = command.Grant.Tags;
        State.Authorized |= command.Grant.Preauthorized;
        State.LastRegistrationId = command.RequestId;
        State.LastRegistrationAttempt = command.Attempt;
        CountAsActivity();
        await SaveAndAnnounceAsync();
        if (retried)
        {
            LogRetried(State.NodeId!);
            return new RegisterResult(Entry(), $"{State.NodeId}.{secret}", null);
        }

        LogReregistered(State.NodeId!, command.Grant.KeyId, previousKey, command.ProvenAt is not null ? "proof" : "token");
        await RecordAsync(Event(EventTypes.NodeReauthenticated, EventActors.Credential(command.Grant.KeyId), new
        {
            name = State.Name, key = command.Grant.KeyId, previousKey, shownBy = command.ProvenAt is not null ? "proof" : "token",
        }));
        SiloMetrics.Registered(State.Ephemeral, again: true);
        return new RegisterResult(Entry(), $"{State.NodeId}.{secret}", null);
    }

    /// <summary>Null when the caller showed it is this node's agent; otherwise why not.</summary>
    private Failure? PossessionFailure(RegisterCommand command)
    {
        if (command.ProvenAt is { } provenAt)
        {
            return State.LastProofAt is null || provenAt > State.LastProofAt
                ? null
                : Failure.Unauthenticated("proof_replayed", "This registration proof was already used, or an earlier one than the last accepted: make a new one.");
        }

        if (NodeIds.TryToken(command.NodeToken, out var nodeId, out var tokenSecret)
            && nodeId == State.NodeId && !State.LoggedOut && Secrets.Matches(tokenSecret, State.TokenHash))
        {
            return null;
        }

        return Failure.Unauthenticated("proof_required",
            "This node key belongs to a registered node: registering it again needs a proof of possession of its private key (see the API's 'proof') or the node's current token.");
    }

    /// <summary>An authenticated call of an offline node restarts its inactivity clock (the caller writes the state).</summary>
    private void CountAsActivity()
    {
        if (!Online)
        {
            State.LastSeen = time.GetUtcNow();
        }
    }

    private async Task<uint> AcquireAddressAsync(string tailnet, string nodeId)
    {
        foreach (var candidate in pool.Candidates(RandomAttempts, ScanLimit))
        {
            // Named before asking: the lease may ask this grain (HoldsAddress) whether it holds the address meanwhile.
            _acquiring = (nodeId, candidate);
            if (await grains.GetGrain<IAddressLeaseGrain>(AddressPool.LeaseKey(tailnet, candidate)).Acquire(nodeId) == LeaseOutcome.Acquired)
            {
                return candidate;
            }
        }

        throw new ControlPlaneException(Failure.Exhausted("address_pool_exhausted", "No free address in the tailnet's pool (released addresses are quarantined)."));
    }

    private async Task AddSessionsAsync(string leaseId, IReadOnlyCollection<string> streamIds)
    {
        if (streamIds.Count == 0)
        {
            return;
        }

        var now = time.GetUtcNow();
        _sessions.Open(leaseId, streamIds, now);

        // Written when the node comes online, or when a gateway it was not held by before holds it now.
        var hosts = _sessions.Hosts(State.SessionHosts, keepRecorded: _sessions.UnconfirmedUntil is not null);
        if (State.Connected && hosts.SequenceEqual(State.SessionHosts))
        {
            return;
        }

        var connecting = !State.Connected;
        State.Connected = true;
        State.SessionHosts = hosts;
        if (connecting)
        {
            State.LastSeen = now;
        }

        await node.WriteStateAsync();
        if (connecting)
        {
            await AnnounceAsync();
        }
    }

    /// <summary>Asks the leases of the node's sessions (and of those it had at its last write) which sessions they hold:
    /// those they do not are over, and those they do and the node had lost (it restarted) are back. A lease that cannot
    /// tell yet leaves its sessions as they are, unless <paramref name="final"/>. True when every lease could tell.</summary>
    private async Task<bool> ConfirmAsync(bool final)
    {
        var hosts = _sessions.LeasesToAsk(State.SessionHosts);
        var allTold = hosts.Length > 0;
        foreach (var host in hosts)
        {
            string[]? held;
            try
            {
                held = await Lease(host).Held(State.NodeId!);
            }
            catch (Exception exception)
            {
                LogLeaseUnreachable(exception, State.NodeId!, host);
                held = null;
            }

            allTold &= held is not null;
            _sessions.Reconcile(host, held, final, time.GetUtcNow());
        }

        State.SessionHosts = _sessions.Hosts(State.SessionHosts, keepRecorded: !allTold && !final);
        return allTold;
    }

    private async Task GoOfflineAsync(DateTimeOffset since)
    {
        State.Connected = false;
        State.LastSeen = since;
        State.SessionHosts = [];
        await SaveAndAnnounceAsync();
    }

    private async Task RemoveAsync(RemovalReason reason, string actor)
    {
        if (!State.Ephemeral)
        {
            // Ephemeral nodes have had their reminder since registration; others get one now to guard the removal.
            await EnsureReminderAsync(_options.EffectiveReminderPeriod(reminderOptions.Value.MinimumReminderPeriod));
        }

        State.Removing = reason;
        State.RemovedBy = actor;
        State.RemovedAt = time.GetUtcNow();
        await node.WriteStateAsync();
        await FinishRemovalAsync();
    }

    /// <summary>Every step is idempotent, so a removal interrupted by a crash is finished by the next reminder tick.</summary>
    private async Task FinishRemovalAsync()
    {
        var nodeId = State.NodeId!;
        var reason = State.Removing ?? RemovalReason.Admin;
        _sessions.Clear();
        StopChecks();
        // First, so that the log has it by the time the node is gone from the API; a crash in any later step has the
        // reminder run them all again, and 'once' keeps the events single.
        await RecordRemovalAsync(nodeId, reason);
        if (State.Ipv4 != 0)
        {
            await grains.GetGrain<IAddressLeaseGrain>(AddressPool.LeaseKey(State.Tailnet, State.Ipv4)).Release(nodeId);
        }

        var lag = reason == RemovalReason.Inactivity ? (State.RemovedAt ?? time.GetUtcNow()) - Deadline : (TimeSpan?)null;
        await Tailnet().Remove(nodeId, reason, lag);
        await DropReminderAsync();
        await node.ClearStateAsync();
        LogRemoved(nodeId, reason);
        SiloMetrics.Removed(reason);
        DeactivateOnIdle();
    }

    /// <summary>Arms the check timer for what the node needs now (<see cref="NodeChecks.Next"/>). Run where the node's
    /// state can change: after every call (<see cref="Invoke"/>), after every check, and at activation.</summary>
    private void ScheduleChecks()
    {
        if (NodeChecks.Next(Exists, _sessions.UnconfirmedUntil, Online, State.Ephemeral, Deadline) is { } at)
        {
            CheckOnceAt(at);
        }
        else
        {
            StopChecks();
        }
    }

    private void CheckOnceAt(DateTimeOffset deadline)
    {
        if (_checkTimer is not null && _checkAt == deadline)
        {
            return;
        }

        StopChecks();
        var due = deadline - time.GetUtcNow();
        due = due > MinimumCheckDelay ? due : MinimumCheckDelay;
        // A timer alone does not keep an idle activation until it fires; the deadline's precision needs it kept.
        this.DelayDeactivation(due + _options.CheckInterval);
        _checkAt = deadline;
        _checkTimer = this.RegisterGrainTimer(
            OnCheckTimerAsync,
            new GrainTimerCreationOptions(due, Timeout.InfiniteTimeSpan) { KeepAlive = true });
    }

    private async Task OnCheckTimerAsync(CancellationToken cancellationToken)
    {
        StopChecks(); // fired once: spent
        await CheckAsync(cancellationToken);
        TrackConnected();
    }

    private void StopChecks()
    {
        _checkTimer?.Dispose();
        _checkTimer = null;
        _checkAt = null;
    }

    private Task EnsureReminderAsync(TimeSpan dueTime) =>
        this.RegisterOrUpdateReminder(ReminderName, dueTime, _options.EffectiveReminderPeriod(reminderOptions.Value.MinimumReminderPeriod));

    private async Task DropReminderAsync()
    {
        if (await this.GetReminder(ReminderName) is { } reminder)
        {
            await this.UnregisterReminder(reminder);
        }
    }

    /// <summary>After a failed write: best effort, since the lease and the registry entry both heal on their own.</summary>
    private async Task UndoRegistrationQuietlyAsync(string tailnet, uint ipv4, string nodeId, Task announced)
    {
        try
        {
            await announced;
            await grains.GetGrain<ITailnetGrain>(tailnet).Remove(nodeId);
            await grains.GetGrain<IAddressLeaseGrain>(AddressPool.LeaseKey(tailnet, ipv4)).Release(nodeId);
        }
        catch (Exception exception)
        {
            LogUndoFailed(exception, nodeId);
        }
    }

    private bool IsCurrent(string nodeId) => Exists && State.NodeId == nodeId;

    private Task RecordRemovalAsync(string nodeId, RemovalReason reason)
    {
        var removedAt = State.RemovedAt ?? time.GetUtcNow();
        var ip = State.Ipv4 != 0 ? AddressPool.FormatIpv4(State.Ipv4) : null;
        var actor = State.RemovedBy ?? EventActors.System;
        var removed = Event(EventTypes.NodeRemoved, actor, new
        {
            reason = reason.Name(), name = State.Name, hostname = State.Hostname, ip, ephemeral = State.Ephemeral,
            inactiveSeconds = reason == RemovalReason.Inactivity ? Math.Round((removedAt - State.LastSeen).TotalSeconds, 3) : (double?)null,
        }) with { Once = $"removed:{nodeId}" };
        // Straight to the log: this must not be swallowed, or a removal could finish without its event.
        var events = ip is null
            ? [removed]
            : new[] { removed, Event(EventTypes.AddressReleased, actor, new { ip }) with { Once = $"released:{nodeId}" } };
        return auditLog.AppendAsync(State.Tailnet, events);
    }

    private EventDraft Event(string type, string actor, object data) =>
        EventDraft.Create(type, actor, $"node:{State.NodeId}", State.NodeId, data);

    private Task RecordAsync(EventDraft draft) => auditLog.RecordAsync(State.Tailnet, draft);

    private ITailnetGrain Tailnet() => grains.GetGrain<ITailnetGrain>(State.Tailnet);

    /// <summary>Puts the node as it is now into its tailnet's registry, with its name as the name to keep should the
    /// registry have lost it; returns the name the registry holds.</summary>
    private Task<string> AnnounceAsync() => Tailnet().Upsert(Entry(), nameHint: State.Name);

    /// <summary>Writes the node's state, then announces it: the registry never shows what is not durable.</summary>
    private async Task SaveAndAnnounceAsync()
    {
        await node.WriteStateAsync();
        await AnnounceAsync();
    }

    private ISessionLeaseGrain Lease(string leaseId) => grains.GetGrain<ISessionLeaseGrain>(leaseId);

    private NodeEntry Entry() => new(
        new NodeRecord(
            State.NodeId!,
            State.Name,
            State.Hostname,
            State.NodeKey,
            AddressPool.Ipv4Address(State.Ipv4),
            AddressPool.Ipv6Address(State.Ipv4),
            State.Ephemeral,
            new ValueList<string>(State.Tags),
            State.Created,
            State.Authorized,
            State.LoggedOut,
            State.KeyId,
            State.Tailnet,
            State.SessionEpoch)
        {
            Endpoints = new ValueList<IPEndPoint>(State.Endpoints),
            Subject = State.Subject,
        },
        new NodePresence(Online, State.LastSeen));

    [LoggerMessage(Level = LogLevel.Warning, Message = "Node {NodeId}: the session lease {LeaseId} could not be asked; its sessions count as unconfirmed")]
    private partial void LogLeaseUnreachable(Exception exception, string nodeId, string leaseId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Node {NodeId} registered in {Tailnet} as {Name} at {Ipv4} (ephemeral: {Ephemeral}, key {KeyId})")]
    private partial void LogRegistered(string nodeId, string tailnet, string name, string ipv4, bool ephemeral, string keyId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Node {NodeId} re-registered with key {KeyId} (was {PreviousKeyId}), shown by {Credential}; its previous token is void")]
    private partial void LogReregistered(string nodeId, string keyId, string previousKeyId, string credential);

    [LoggerMessage(Level = LogLevel.Information, Message = "Node {NodeId}: its registration was retried by the gateway (the first answer was lost); a new token is issued")]
    private partial void LogRetried(string nodeId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Node {NodeId}: a registration with key {KeyId} was refused ({Code}); the node is unchanged")]
    private partial void LogTakeoverRefused(string nodeId, string keyId, string code);

    [LoggerMessage(Level = LogLevel.Information, Message = "Node {NodeId} logged out")]
    private partial void LogLoggedOut(string nodeId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Node {NodeId} inactive for {Inactive}, {Lag} past its timeout")]
    private partial void LogInactive(string nodeId, TimeSpan inactive, TimeSpan lag);

    [LoggerMessage(Level = LogLevel.Information, Message = "Node {NodeId} removed ({Reason})")]
    private partial void LogRemoved(string nodeId, RemovalReason reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Node {NodeId}: undoing a failed registration failed; lease and registry entry will be reclaimed")]
    private partial void LogUndoFailed(Exception exception, string nodeId);
}
