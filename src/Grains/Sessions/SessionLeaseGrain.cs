using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Options;
using EphemeralOrleans.Contracts.Validation;
using EphemeralOrleans.Grains.Telemetry;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Concurrency;

namespace EphemeralOrleans.Grains.Sessions;

/// <summary>
/// A gateway host's session lease (see <see cref="ISessionLeaseGrain"/>): which node holds which of its streams, and when
/// the gateway last renewed. A timer at <see cref="EphemeralOptions.CheckInterval"/> lapses it a lease after the last
/// renewal, so a gateway killed -9 lets its nodes go offline within the bound per-stream heartbeats had. Reentrant, so
/// that nodes called from here may call back (a node activated by a lapse asks what it holds); lapses and restores,
/// which call out to every node, take turns.
/// </summary>
[Reentrant]
public sealed partial class SessionLeaseGrain(
    IGrainFactory grains,
    IOptions<EphemeralOptions> ephemeralOptions,
    TimeProvider time,
    ILogger<SessionLeaseGrain> logger) : Grain, ISessionLeaseGrain
{
    /// <summary>Node calls in flight at once during a lapse or a restore.</summary>
    private const int Parallel = 256;

    private readonly EphemeralOptions _options = ephemeralOptions.Value;
    private readonly Dictionary<string, HashSet<string>> _streamsOfNode = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _nodeOfStream = new(StringComparer.Ordinal);
    private readonly HashSet<string> _toReattach = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _fanout = new(1, 1);
    private DateTimeOffset _activatedAt;
    private DateTimeOffset _renewedAt;

    /// <summary>Whether this activation holds every stream of its gateway (it was restored, or lapsed and told every node).</summary>
    private bool _known;

    private bool _lapsed;

    /// <summary>The end of the last renewal's lease: no session held here was open later than this.</summary>
    private DateTimeOffset _lapsedSince;

    private string LeaseId => this.GetPrimaryKeyString();

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _activatedAt = _renewedAt = time.GetUtcNow();
        this.RegisterGrainTimer(CheckAsync, new GrainTimerCreationOptions(_options.CheckInterval, _options.CheckInterval) { KeepAlive = true });
        return Task.CompletedTask;
    }

    public Task Hold(string nodeId, string streamId)
    {
        Add(nodeId, streamId);
        return Task.CompletedTask;
    }

    public Task Release(string streamId)
    {
        if (_nodeOfStream.Remove(streamId, out var nodeId) && _streamsOfNode.TryGetValue(nodeId, out var streams)
            && streams.Remove(streamId) && streams.Count == 0)
        {
            _streamsOfNode.Remove(nodeId);
        }

        return Task.CompletedTask;
    }

    public Task<bool> Renew()
    {
        SiloMetrics.SessionKeepalive("renew");
        if (_lapsed)
        {
            return Task.FromResult(false); // too late: the nodes were told; the restore reattaches them
        }

        // A renewal proves the gateway alive even when this activation cannot take it yet (the restore follows).
        _renewedAt = time.GetUtcNow();
        return Task.FromResult(_known);
    }

    public async Task Restore(ValueList<HeldStream> streams, bool replace)
    {
        SiloMetrics.SessionKeepalive("restore");
        await _fanout.WaitAsync();
        try
        {
            if (replace)
            {
                _streamsOfNode.Clear();
                _nodeOfStream.Clear();
            }

            foreach (var stream in streams)
            {
                Add(stream.NodeId, stream.StreamId);
                _toReattach.Add(stream.NodeId);
            }

            if (_lapsed || !_known)
            {
                LogRestored(LeaseId, streams.Count);
            }

            _known = true;
            _lapsed = false;
            _renewedAt = time.GetUtcNow();
            await ReattachAsync();
        }
        finally
        {
            _fanout.Release();
        }
    }

    public Task<string[]?> Held(string nodeId)
    {
        SiloMetrics.SessionKeepalive("confirm");
        // Unrestored for a whole lease since activation: no gateway renews this lease, so what it holds is all there is.
        var canTell = _known || time.GetUtcNow() - _activatedAt >= _options.SessionLease;
        return Task.FromResult(canTell ? (_streamsOfNode.TryGetValue(nodeId, out var streams) ? streams.ToArray() : []) : null);
    }

    private void Add(string nodeId, string streamId)
    {
        if (!_streamsOfNode.TryGetValue(nodeId, out var streams))
        {
            _streamsOfNode[nodeId] = streams = new HashSet<string>(StringComparer.Ordinal);
        }

        streams.Add(streamId);
        _nodeOfStream[streamId] = nodeId;
    }

    private async Task CheckAsync(CancellationToken cancellationToken)
    {
        if (!_fanout.Wait(0))
        {
            return; // a lapse or a restore is under way; the next tick looks again
        }

        try
        {
            var now = time.GetUtcNow();
            if (!_lapsed && now - _renewedAt > _options.SessionLease)
            {
                _lapsed = true;
                _lapsedSince = _renewedAt + _options.SessionLease;
                _toReattach.Clear();
                LogLapsed(LeaseId, _streamsOfNode.Count, now - _renewedAt);
            }

            if (_lapsed)
            {
                await LapseAsync(_lapsedSince);
                return;
            }

            await ReattachAsync();
        }
        finally
        {
            _fanout.Release();
        }
    }

    /// <summary>Tells every node held that its sessions here are over; a node that could not be told is told at the next
    /// tick. Done, the activation goes (a gateway that comes back restores a new one).</summary>
    private async Task LapseAsync(DateTimeOffset since)
    {
        var told = await CallNodesAsync(_streamsOfNode.Keys.ToArray(), (node, _) => node.SessionsLapsed(LeaseId, since));
        foreach (var nodeId in told)
        {
            if (_streamsOfNode.Remove(nodeId, out var streams))
            {
                foreach (var streamId in streams)
                {
                    _nodeOfStream.Remove(streamId);
                }
            }
        }

        if (_streamsOfNode.Count == 0)
        {
            DeactivateOnIdle();
        }
    }

    private async Task ReattachAsync()
    {
        if (_toReattach.Count == 0)
        {
            return;
        }

        var told = await CallNodesAsync(_toReattach.ToArray(), (node, nodeId) =>
            _streamsOfNode.TryGetValue(nodeId, out var streams) ? node.Reattach(LeaseId, new ValueList<string>(streams)) : Task.CompletedTask);
        _toReattach.ExceptWith(told);
    }

    /// <summary>Calls each node, <see cref="Parallel"/> at a time; returns those the call reached.</summary>
    private async Task<List<string>> CallNodesAsync(string[] nodeIds, Func<INodeGrain, string, Task> call)
    {
        var reached = new List<string>(nodeIds.Length);
        Exception? failure = null;
        foreach (var chunk in nodeIds.Chunk(Parallel))
        {
            var calls = chunk.Select(async nodeId =>
            {
                if (!NodeIds.TryGrainKey(nodeId, out var key))
                {
                    return nodeId; // not a node this cluster issued: nothing to tell
                }

                try
                {
                    await call(grains.GetGrain<INodeGrain>(key), nodeId);
                    return nodeId;
                }
                catch (Exception exception)
                {
                    failure ??= exception;
                    return null;
                }
            });
            reached.AddRange((await Task.WhenAll(calls)).OfType<string>());
        }

        if (failure is not null)
        {
            LogNodesUnreached(failure, LeaseId, nodeIds.Length - reached.Count);
        }

        return reached;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Session lease {LeaseId} lapsed ({Nodes} nodes held, last renewed {Silence} ago): its gateway is gone")]
    private partial void LogLapsed(string leaseId, int nodes, TimeSpan silence);

    [LoggerMessage(Level = LogLevel.Information, Message = "Session lease {LeaseId} restored by its gateway with {Streams} streams")]
    private partial void LogRestored(string leaseId, int streams);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Session lease {LeaseId}: {Nodes} nodes could not be reached; retrying")]
    private partial void LogNodesUnreached(Exception exception, string leaseId, int nodes);
}
