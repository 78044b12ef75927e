using System.Collections.Immutable;
using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Policy;
using EphemeralOrleans.Contracts.Options;
using EphemeralOrleans.Contracts.Validation;
using EphemeralOrleans.Grains.Common;
using EphemeralOrleans.Grains.Events;
using EphemeralOrleans.Grains.Telemetry;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Concurrency;
using Orleans.Utilities;

namespace EphemeralOrleans.Grains.Registry;

[GenerateSerializer, Alias("eo.TailnetSettingsState")]
public sealed class TailnetSettingsState
{
    [Id(0)] public bool DeviceApproval { get; set; }
    [Id(1)] public ImmutableList<string> KeyIds { get; set; } = [];
    [Id(2)] public string? PolicyJson { get; set; }
    [Id(3)] public ImmutableList<TrustPolicy> TrustPolicies { get; set; } = [];
}

/// <summary>
/// A tailnet's settings and node registry. Reentrant so that registrations never queue behind a storage write: state
/// changes within single turns, and writes go through <see cref="GroupCommit"/>, the registry's as batches of the
/// entries that changed (<see cref="IRegistryStore"/>).
/// </summary>
[Reentrant]
public sealed partial class TailnetGrain : Grain, ITailnetGrain
{
    private const int RefreshConcurrency = 32;

    /// <summary>How long a new entry may go unconfirmed before the registry asks its node whether it exists.</summary>
    private static readonly TimeSpan ConfirmAfter = TimeSpan.FromSeconds(10);

    private readonly IPersistentState<TailnetSettingsState> _settings;
    private readonly IRegistryStore _registry;
    private readonly IGrainFactory _grains;
    private readonly AuditLog _auditLog;
    private readonly MapOptions _mapOptions;
    private readonly ILogger<TailnetGrain> _logger;
    private readonly GroupCommit _settingsCommit;
    private readonly GroupCommit _registryCommit;
    private readonly ObserverManager<IMapObserver> _observers;
    private readonly Dictionary<string, string> _idsByName = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _nextSuffix = new(StringComparer.Ordinal);
    private readonly Dictionary<string, NodeEntry?> _pending = new(StringComparer.Ordinal);
    private bool _policyChanged;
    private readonly Dictionary<string, NodeEntry?> _unsaved = new(StringComparer.Ordinal);

    /// <summary>New entries not yet confirmed by their node (its registration may have died before the node was stored).</summary>
    private readonly Dictionary<string, DateTimeOffset> _unconfirmed = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    private IGrainTimer? _confirmTimer;
    private ImmutableDictionary<string, NodeEntry> _nodes = ImmutableDictionary<string, NodeEntry>.Empty;

    // Removals since this activation, for the gateways' fleet metrics (counters: a restart starts them again).
    private readonly long[] _removals = new long[Enum.GetValues<RemovalReason>().Length];
    private readonly long[] _removalLagCounts = new long[Contracts.Telemetry.RemovalLagBuckets.Length + 1];
    private IGrainTimer? _batchTimer;
    private DateTimeOffset _firstPendingAt;
    private IDisposable? _metrics;
    private long _version;

    public TailnetGrain(
        [PersistentState("settings", StorageNames.State)] IPersistentState<TailnetSettingsState> settings,
        IRegistryStore registry,
        IGrainFactory grains,
        AuditLog auditLog,
        IOptions<MapOptions> mapOptions,
        TimeProvider time,
        ILogger<TailnetGrain> logger)
    {
        _settings = settings;
        _registry = registry;
        _grains = grains;
        _auditLog = auditLog;
        _mapOptions = mapOptions.Value;
        _time = time;
        _logger = logger;
        _settingsCommit = new GroupCommit(() => _settings.WriteStateAsync());
        _registryCommit = new GroupCommit(SaveRegistryAsync);
        // Gateways renew their subscription well within the minute; expiry runs on the silo's clock like everything else.
        _observers = new ObserverManager<IMapObserver>(TimeSpan.FromMinutes(1), logger) { GetDateTime = () => time.GetUtcNow().UtcDateTime };
        // Versions start from the clock so that they keep increasing across activations.
        _version = time.GetUtcNow().ToUnixTimeMilliseconds() * 1000;
    }

    private string Tailnet => this.GetPrimaryKeyString();

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        // Online state is not stored; until each node has answered, every node counts as offline.
        _nodes = (await _registry.LoadAsync(Tailnet, cancellationToken)).ToImmutableDictionary(n => n.Id, n => n.Offline());
        foreach (var node in _nodes.Values)
        {
            _idsByName[node.Record.Name] = node.Id;
        }

        if (!_nodes.IsEmpty)
        {
            _ = RefreshAsync(_nodes.Keys.ToArray());
        }

        _metrics = SiloMetrics.Track(() =>
        {
            var counts = Counts();
            return (counts.Total, counts.Ephemeral, counts.Online);
        });
    }

    public Task<TailnetCounts> GetCounts() => Task.FromResult(Counts());

    private TailnetCounts Counts()
    {
        var (online, ephemeral, pending) = (0, 0, 0);
        var nodes = _nodes;
        foreach (var node in nodes.Values)
        {
            online += node.Presence.Online ? 1 : 0;
            ephemeral += node.Record.Ephemeral ? 1 : 0;
            pending += node.Record.Authorized ? 0 : 1;
        }

        return new TailnetCounts(nodes.Count, online, ephemeral, pending)
        {
            Removals = [.. _removals],
            RemovalLagCounts = [.. _removalLagCounts],
        };
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _metrics?.Dispose();
        return Task.CompletedTask;
    }

    public Task<TailnetSettings> GetSettings() => Task.FromResult(new TailnetSettings(_settings.State.DeviceApproval));

    public async Task<TailnetSettings> UpdateSettings(bool? deviceApproval)
    {
        if (deviceApproval is { } approval && approval != _settings.State.DeviceApproval)
        {
            _settings.State.DeviceApproval = approval;
            await _settingsCommit.Request();
            await RecordAsync(EventTypes.SettingsUpdated, "settings", new { deviceApproval = approval });
        }

        return new TailnetSettings(_settings.State.DeviceApproval);
    }

    public Task<string?> GetPolicy() => Task.FromResult(_settings.State.PolicyJson);

    public async Task SetPolicy(string policyJson)
    {
        var previous = _settings.State.PolicyJson;
        _settings.State.PolicyJson = policyJson;
        await _settingsCommit.Request();
        await RecordAsync(EventTypes.PolicyUpdated, "policy", PolicyDiff.Summary(previous ?? PolicyDocument.AllowAllJson, policyJson));
        // Gateways recompute who sees whom; the change goes out in the next batch like any other.
        _policyChanged = true;
        StartBatch();
    }

    public async Task AddKey(string keyId)
    {
        _settings.State.KeyIds = _settings.State.KeyIds.Add(keyId);
        await _settingsCommit.Request();
    }

    public Task<string[]> ListKeyIds() => Task.FromResult(_settings.State.KeyIds.ToArray());

    public Task<TrustPolicy[]> ListTrustPolicies() => Task.FromResult(_settings.State.TrustPolicies.ToArray());

    public async Task PutTrustPolicy(TrustPolicy policy)
    {
        var policies = _settings.State.TrustPolicies;
        var index = policies.FindIndex(p => p.Id == policy.Id);
        _settings.State.TrustPolicies = index >= 0 ? policies.SetItem(index, policy) : policies.Add(policy);
        await _settingsCommit.Request();
        await RecordAsync(EventTypes.TrustPolicyPut, $"trust-policy:{policy.Id}", new { id = policy.Id, replaced = index >= 0, spec = policy.Spec });
    }

    public async Task<bool> DeleteTrustPolicy(string policyId)
    {
        var policies = _settings.State.TrustPolicies;
        var remaining = policies.RemoveAll(p => p.Id == policyId);
        if (remaining.Count == policies.Count)
        {
            return false;
        }

        _settings.State.TrustPolicies = remaining;
        await _settingsCommit.Request();
        await RecordAsync(EventTypes.TrustPolicyDeleted, $"trust-policy:{policyId}", new { id = policyId });
        return true;
    }

    public async Task<string> Upsert(NodeEntry node, string? nameHint = null)
    {
        if (_nodes.TryGetValue(node.Id, out var existing))
        {
            _unconfirmed.Remove(node.Id);
            var name = existing.Record.Name;
            var updated = node with { Record = node.Record with { Name = name } };
            // Only a record that changed is written; presence alone is not stored.
            if (Change(node.Id, updated, durable: updated.Record != existing.Record))
            {
                await _registryCommit.Request();
            }

            return name;
        }

        var named = node with { Record = node.Record with { Name = AllocateName(node.Record.Hostname, nameHint ?? "") } };
        _idsByName[named.Record.Name] = named.Id;
        _unconfirmed[named.Id] = _time.GetUtcNow();
        _confirmTimer ??= this.RegisterGrainTimer(ConfirmAsync, new GrainTimerCreationOptions(ConfirmAfter, ConfirmAfter) { Interleave = true });
        Change(named.Id, named, durable: true);
        await _registryCommit.Request();
        return named.Record.Name;
    }

    public Task Confirm(string nodeId)
    {
        _unconfirmed.Remove(nodeId);
        return Task.CompletedTask;
    }

    public async Task Remove(string nodeId, RemovalReason? reason = null, TimeSpan? lag = null)
    {
        if (!_nodes.TryGetValue(nodeId, out var existing))
        {
            return;
        }

        if (reason is { } why)
        {
            _removals[(int)why]++;
        }

        if (lag is { } late)
        {
            var seconds = Math.Max(0, late.TotalSeconds);
            var bucket = Array.FindIndex(Contracts.Telemetry.RemovalLagBuckets, bound => seconds <= bound);
            _removalLagCounts[bucket < 0 ? _removalLagCounts.Length - 1 : bucket]++;
        }

        _idsByName.Remove(existing.Record.Name);
        _unconfirmed.Remove(nodeId);
        Change(nodeId, null, durable: true);
        await _registryCommit.Request();
    }

    public async Task<RenameOutcome> Rename(string nodeId, string name)
    {
        if (!_nodes.TryGetValue(nodeId, out var existing))
        {
            return RenameOutcome.NotFound;
        }

        if (existing.Record.Name == name)
        {
            return RenameOutcome.Renamed;
        }

        if (_idsByName.ContainsKey(name))
        {
            return RenameOutcome.Taken;
        }

        _idsByName.Remove(existing.Record.Name);
        _idsByName[name] = nodeId;
        Change(nodeId, existing with { Record = existing.Record with { Name = name } }, durable: true);
        await _registryCommit.Request();
        return RenameOutcome.Renamed;
    }

    public Task<TailnetSnapshot> GetSnapshot() => Task.FromResult(Snapshot());

    public Task<TailnetSnapshot?> Subscribe(IMapObserver observer, long knownVersion)
    {
        _observers.Subscribe(observer, observer);
        return Task.FromResult(knownVersion == _version ? null : Snapshot());
    }

    public Task Unsubscribe(IMapObserver observer)
    {
        _observers.Unsubscribe(observer);
        return Task.CompletedTask;
    }

    /// <summary>Writes the entries changed since the last write; on failure they stay queued for the next one.</summary>
    private async Task SaveRegistryAsync()
    {
        if (_unsaved.Count == 0)
        {
            return;
        }

        var batch = _unsaved.ToArray();
        _unsaved.Clear();
        try
        {
            await _registry.ApplyAsync(
                Tailnet,
                batch.Where(e => e.Value is not null).Select(e => e.Value!).ToArray(),
                batch.Where(e => e.Value is null).Select(e => e.Key).ToArray());
        }
        catch
        {
            foreach (var (nodeId, entry) in batch)
            {
                // A change made since is newer than the one that failed.
                _unsaved.TryAdd(nodeId, entry);
            }

            throw;
        }
    }

    private TailnetSnapshot Snapshot() => new(Tailnet, _version, _nodes.Values.ToArray()) { PolicyJson = _settings.State.PolicyJson };

    /// <summary>Keeps a name a node already had (re-announced after a crash) when it is free; else host, host-1, host-2, ….</summary>
    private string AllocateName(string hostname, string previous)
    {
        if (previous.Length > 0 && !_idsByName.ContainsKey(previous))
        {
            return previous;
        }

        var baseName = Identifiers.NameFromHostname(hostname);
        if (!_idsByName.ContainsKey(baseName))
        {
            return baseName;
        }

        // The hint avoids rescanning host-1…host-N for every new node of a fleet sharing one hostname.
        var suffix = _nextSuffix.GetValueOrDefault(baseName, 1);
        while (_idsByName.ContainsKey($"{baseName}-{suffix}"))
        {
            suffix++;
        }

        _nextSuffix[baseName] = suffix + 1;
        return $"{baseName}-{suffix}";
    }

    /// <summary>
    /// The one place a node's entry changes (null removes it): in memory, in the next batch to gateways, and, when
    /// <paramref name="durable"/>, in the next registry write. Returns <paramref name="durable"/>.
    /// </summary>
    private bool Change(string nodeId, NodeEntry? entry, bool durable)
    {
        _nodes = entry is null ? _nodes.Remove(nodeId) : _nodes.SetItem(nodeId, entry);
        if (_pending.Count == 0)
        {
            _firstPendingAt = _time.GetUtcNow();
        }

        _pending[nodeId] = entry;
        StartBatch();
        if (durable)
        {
            _unsaved[nodeId] = entry;
        }

        return durable;
    }

    /// <summary>Opens a batch window unless one is open: what changes within it goes out as one batch.</summary>
    private void StartBatch() =>
        _batchTimer ??= this.RegisterGrainTimer(
            PublishBatchAsync,
            new GrainTimerCreationOptions(_mapOptions.BatchWindow, Timeout.InfiniteTimeSpan) { Interleave = true });

    private async Task PublishBatchAsync(CancellationToken cancellationToken)
    {
        _batchTimer?.Dispose();
        _batchTimer = null;
        if (_pending.Count == 0 && !_policyChanged)
        {
            return;
        }

        var changes = new TailnetChanges(
            Tailnet,
            _version,
            ++_version,
            _pending.Values.OfType<NodeEntry>().ToArray(),
            _pending.Where(p => p.Value is null).Select(p => p.Key).ToArray())
        {
            FirstChangeAt = _pending.Count > 0 ? _firstPendingAt : _time.GetUtcNow(),
            PolicyJson = _policyChanged ? _settings.State.PolicyJson ?? PolicyDocument.AllowAllJson : null,
        };
        _pending.Clear();
        _policyChanged = false;
        await _observers.Notify(observer => observer.OnChanges(changes));
    }

    /// <summary>Asks the nodes of entries still unconfirmed whether they exist.</summary>
    private async Task ConfirmAsync(CancellationToken cancellationToken)
    {
        var due = _time.GetUtcNow() - ConfirmAfter;
        var silent = _unconfirmed.Where(e => e.Value <= due).Select(e => e.Key).ToArray();
        foreach (var nodeId in silent)
        {
            _unconfirmed.Remove(nodeId);
        }

        if (_unconfirmed.Count == 0)
        {
            _confirmTimer?.Dispose();
            _confirmTimer = null;
        }

        if (silent.Length > 0)
        {
            await RefreshAsync(silent);
        }
    }

    /// <summary>After a (re)activation, or for silent new entries: asks every listed node for its current entry, and drops nodes that are gone.</summary>
    private async Task RefreshAsync(string[] nodeIds)
    {
        using var gate = new SemaphoreSlim(RefreshConcurrency);
        var stale = 0;
        await Task.WhenAll(nodeIds.Select(async nodeId =>
        {
            await gate.WaitAsync();
            try
            {
                if (!NodeIds.TryGrainKey(nodeId, out var grainKey))
                {
                    return;
                }

                var entry = await _grains.GetGrain<INodeGrain>(grainKey).GetEntry(nodeId);
                if (entry is null)
                {
                    stale++;
                    await Remove(nodeId);
                }
                else if (_nodes.ContainsKey(nodeId))
                {
                    await Upsert(entry, entry.Record.Name);
                }
            }
            catch (Exception exception)
            {
                LogRefreshFailed(exception, Tailnet, nodeId);
            }
            finally
            {
                gate.Release();
            }
        }));
        LogRefreshed(Tailnet, nodeIds.Length);
        if (stale > 0)
        {
            LogDroppedStale(Tailnet, stale);
        }
    }

    private Task RecordAsync(string type, string target, object data) =>
        _auditLog.RecordAsync(Tailnet, EventDraft.Create(type, EventActors.Current, target, null, data));

    [LoggerMessage(Level = LogLevel.Debug, Message = "Tailnet {Tailnet}: {Count} registry entries checked with their nodes")]
    private partial void LogRefreshed(string tailnet, int count);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Tailnet {Tailnet}: dropped {Stale} registry entries whose node does not exist (left by a crash)")]
    private partial void LogDroppedStale(string tailnet, int stale);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Tailnet {Tailnet}: could not refresh node {NodeId}")]
    private partial void LogRefreshFailed(Exception exception, string tailnet, string nodeId);
}
