using System.Net;
using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Options;
using EphemeralOrleans.Contracts.Validation;
using EphemeralOrleans.Grains.Common;
using EphemeralOrleans.Grains.Events;
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
    IOptions<ReminderOptions> reminderOptions,
    TimeProvider time,
    ILogger<NodeGrain> logger) : Grain, INodeGrain, IRemindable
{
    private const string ReminderName = "lifecycle";
    private const string RecoveredSession = "~recovered";
    private const int RandomAttempts = 32;
    private const long ScanLimit = 1 << 16;
    private static readonly TimeSpan MinimumCheckDelay = TimeSpan.FromMilliseconds(10);

    private readonly EphemeralOptions _options = ephemeralOptions.Value;

    /// <summary>Open map sessions and their last heartbeat; in memory only.</summary>
    private readonly Dictionary<string, DateTimeOffset> _sessions = new(StringComparer.Ordinal);

    private DateTimeOffset _inactiveSince;
    private IGrainTimer? _checkTimer;

    /// <summary>The moment the armed check timer fires once (an offline ephemeral node's deadline); null when it is
    /// periodic or there is none.</summary>
    private DateTimeOffset? _checkAt;
    private (string NodeId, uint Ipv4)? _acquiring;

    private NodeState State => node.State;

    private bool Exists => State.NodeId is not null && State.Removing is null;

    private bool Online => _sessions.Count > 0;

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (!Exists)
        {
            return;
        }

        var now = time.GetUtcNow();
        if (State.Connected)
        {
            // It was online when its silo went away: its clock restarts now, unless a gateway renews the session.
            _sessions[RecoveredSession] = now;
        }

        _inactiveSince = State.LastSeen;
        ScheduleChecks();
        State.Name = await Tailnet().Upsert(Entry());
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
        };
        // The registry entry (and the node's name) is written alongside the node's own state; should this grain's
        // silo die in between, the registry drops the entry when it finds no such node (see TailnetGrain).
        var announced = Tailnet().Upsert(Entry());
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

        _inactiveSince = now;
        ScheduleChecks();
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

    public async Task<SessionInfo?> OpenSession(string nodeId, string tokenSecret, string streamId)
    {
        if (!IsCurrent(nodeId) || State.LoggedOut || !Secrets.Matches(tokenSecret, State.TokenHash))
        {
            return null;
        }

        await TouchSessionAsync(streamId);
        return new SessionInfo(Entry(), State.SessionEpoch);
    }

    public async Task<bool> KeepSession(string streamId, int epoch)
    {
        if (!Exists || State.LoggedOut || epoch != State.SessionEpoch)
        {
            return false;
        }

        await TouchSessionAsync(streamId);
        return true;
    }

    public async Task CloseSession(string streamId)
    {
        if (_sessions.Remove(streamId) && _sessions.Count == 0 && Exists)
        {
            await GoOfflineAsync(time.GetUtcNow());
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
        ScheduleChecks();
        State.LoggedOut = true;
        State.TokenHash = null;
        State.SessionEpoch++;
        State.Connected = false;
        State.LastSeen = time.GetUtcNow();
        await node.WriteStateAsync();
        await Tailnet().Upsert(Entry());
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
            await node.WriteStateAsync();
            await Tailnet().Upsert(Entry());
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
            await node.WriteStateAsync();
            await Tailnet().Upsert(Entry());
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
        var lease = _options.SessionLease;
        var expired = _sessions.Where(s => now - s.Value > lease).ToArray();
        foreach (var session in expired)
        {
            _sessions.Remove(session.Key);
        }

        if (expired.Length > 0 && _sessions.Count == 0)
        {
            // No gateway renewed these sessions: the latest moment they could still have been open is the lease's end.
            await GoOfflineAsync(expired.Max(s => s.Value) + lease);
        }

        if (State.Ephemeral && !Online && now >= _inactiveSince + _options.InactivityTimeout)
        {
            LogInactive(State.NodeId!, now - _inactiveSince, now - (_inactiveSince + _options.InactivityTimeout));
            SiloMetrics.RemovedLate(now - (_inactiveSince + _options.InactivityTimeout));
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

        if (PossessionFailure(command) is { } refused)
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
        CountAsActivity();
        await node.WriteStateAsync();
        await Tailnet().Upsert(Entry());
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
            _inactiveSince = State.LastSeen;
            ScheduleChecks();
        }
    }

    private async Task<uint> AcquireAddressAsync(string tailnet, string nodeId)
    {
        for (var attempt = 0; attempt < RandomAttempts; attempt++)
        {
            if (await TryAddressAsync(pool.Random()) is { } address)
            {
                return address;
            }
        }

        // A small or crowded pool: walk it once from a random point.
        var start = pool.Random();
        for (long i = 0; i < Math.Min(pool.Size, ScanLimit); i++)
        {
            if (await TryAddressAsync((uint)(pool.First + ((start - pool.First + i) % pool.Size))) is { } address)
            {
                return address;
            }
        }

        throw new ControlPlaneException(Failure.Exhausted("address_pool_exhausted", "No free address in the tailnet's pool (released addresses are quarantined)."));

        async Task<uint?> TryAddressAsync(uint candidate)
        {
            if (!pool.IsUsable(candidate))
            {
                return null;
            }

            _acquiring = (nodeId, candidate);
            var outcome = await grains.GetGrain<IAddressLeaseGrain>(AddressPool.LeaseKey(tailnet, candidate)).Acquire(nodeId);
            return outcome == LeaseOutcome.Acquired ? candidate : null;
        }
    }

    private async Task TouchSessionAsync(string streamId)
    {
        var wasOnline = Online;
        _sessions[streamId] = time.GetUtcNow();
        _sessions.Remove(RecoveredSession);
        if (!wasOnline)
        {
            ScheduleChecks();
        }

        if (!wasOnline || !State.Connected)
        {
            State.Connected = true;
            State.LastSeen = time.GetUtcNow();
            await node.WriteStateAsync();
            await Tailnet().Upsert(Entry());
        }
    }

    private async Task GoOfflineAsync(DateTimeOffset since)
    {
        _inactiveSince = since;
        ScheduleChecks();
        State.Connected = false;
        State.LastSeen = since;
        await node.WriteStateAsync();
        await Tailnet().Upsert(Entry());
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

        await Tailnet().Remove(nodeId);
        await DropReminderAsync();
        await node.ClearStateAsync();
        LogRemoved(nodeId, reason);
        SiloMetrics.Removed(reason);
        DeactivateOnIdle();
    }

    /// <summary>
    /// Arms the check timer for what the node needs now. Online: a check every <see cref="EphemeralOptions.CheckInterval"/>,
    /// since its sessions lapse unless a gateway renews them. Offline and ephemeral: one check, at its removal deadline,
    /// with the activation kept until then. Offline otherwise: none. So a fleet of offline nodes waiting for their
    /// deadlines costs no timer ticks (with a check every 15 s, 50,000 of them cost 3,300 grain turns a second).
    /// </summary>
    private void ScheduleChecks()
    {
        if (!Exists)
        {
            StopChecks();
            return;
        }

        if (Online)
        {
            if (_checkTimer is null || _checkAt is not null)
            {
                StopChecks();
                var interval = _options.CheckInterval;
                _checkTimer = this.RegisterGrainTimer(
                    OnCheckTimerAsync,
                    new GrainTimerCreationOptions(interval, interval) { KeepAlive = State.Ephemeral });
            }

            return;
        }

        if (!State.Ephemeral)
        {
            StopChecks();
            return;
        }

        var deadline = _inactiveSince + _options.InactivityTimeout;
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
        if (_checkAt is not null)
        {
            StopChecks(); // fired once: spent
        }

        await CheckAsync(cancellationToken);
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

    [LoggerMessage(Level = LogLevel.Information, Message = "Node {NodeId} registered in {Tailnet} as {Name} at {Ipv4} (ephemeral: {Ephemeral}, key {KeyId})")]
    private partial void LogRegistered(string nodeId, string tailnet, string name, string ipv4, bool ephemeral, string keyId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Node {NodeId} re-registered with key {KeyId} (was {PreviousKeyId}), shown by {Credential}; its previous token is void")]
    private partial void LogReregistered(string nodeId, string keyId, string previousKeyId, string credential);

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
