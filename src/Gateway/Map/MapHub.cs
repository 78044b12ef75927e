using System.Collections.Concurrent;
using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Options;
using EphemeralOrleans.Gateway.Hosting;
using EphemeralOrleans.Gateway.Telemetry;
using Microsoft.Extensions.Options;

namespace EphemeralOrleans.Gateway.Map;

/// <summary>
/// This gateway process's single netmap observer (GPSTracker-style): it subscribes once per tailnet with open streams,
/// receives that tailnet's batches and fans them out to its local streams. Never one Orleans subscription per agent.
/// </summary>
public sealed partial class MapHub : IMapObserver, IHostedService, IAsyncDisposable
{
    private static readonly TimeSpan RenewInterval = TimeSpan.FromSeconds(20);

    private const string GatewayStopping = "gateway stopping";

    private readonly IGrainFactory _grains;
    private readonly MapOptions _mapOptions;
    private readonly GatewaySessionLease _sessionLease;
    private readonly GatewayOptions _gatewayOptions;
    private readonly ILogger<MapHub> _logger;
    private readonly ConcurrentDictionary<string, TailnetFeed> _feeds = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();
    private readonly FanoutThreads _fanout = new(Environment.ProcessorCount);
    private readonly CancellationToken _applicationStopping;
    private IMapObserver? _reference;
    private Task? _renewLoop;
    private Task? _keepAliveLoop;

    public MapHub(IGrainFactory grains, IOptions<MapOptions> mapOptions, GatewaySessionLease sessionLease,
        IOptions<GatewayOptions> gatewayOptions, IHostApplicationLifetime lifetime, ILogger<MapHub> logger)
    {
        _applicationStopping = lifetime.ApplicationStopping;
        _grains = grains;
        _mapOptions = mapOptions.Value;
        _sessionLease = sessionLease;
        _gatewayOptions = gatewayOptions.Value;
        _logger = logger;
    }

    private IMapObserver Reference => _reference ??= _grains.CreateObjectReference<IMapObserver>(this);

    public Task OnChanges(TailnetChanges changes)
    {
        if (_feeds.TryGetValue(changes.Tailnet, out var feed) && !feed.Apply(changes))
        {
            LogGap(changes.Tailnet, feed.Version, changes.PreviousVersion);
            _ = ResyncAsync(feed);
        }

        return Task.CompletedTask;
    }

    /// <summary>Serves one agent's stream until it ends: the full map, then its deltas, with keepalives when silent.
    /// <c>send</c> writes one message to the agent's transport (an NDJSON line, a gRPC message) and flushes it.
    /// Returns true when the stream ended because this gateway is stopping: the transport must then end it as an
    /// error, so that the agent reconnects (a clean end means the node is gone).</summary>
    internal async Task<bool> RunStreamAsync(INodeGrain node, SessionInfo session, string streamId,
        Func<MapMessage, CancellationToken, Task> send, CancellationToken aborted)
    {
        var feed = await FeedAsync(session.Node.Record.Tailnet);
        using var stream = new MapStream(_gatewayOptions.StreamBufferSize);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(aborted, _applicationStopping);
        var subscriber = feed.Attach(stream, session.Node, session.Epoch);
        GatewayMetrics.StreamOpened();
        try
        {
            await WriteAsync(feed, subscriber, send, linked.Token);
        }
        catch (Exception exception) when (linked.IsCancellationRequested || exception is IOException)
        {
            // However the transport reports a vanished peer (cancellation, IOException, a completed gRPC call).
            stream.Close(_applicationStopping.IsCancellationRequested ? GatewayStopping : "agent disconnected");
        }
        finally
        {
            feed.Detach(subscriber);
            GatewayMetrics.StreamClosed();
            await linked.CancelAsync();
            LogStreamClosed(session.Node.Id, stream.ClosedBecause ?? "ended");
            // A gateway going down leaves its sessions open: the agent will be back, so its node's clock must not start
            // now. They end when this gateway's session lease lapses, a lease after its last renewal.
            if (!_applicationStopping.IsCancellationRequested)
            {
                await CloseSessionQuietlyAsync(node, session.Node.Id, streamId);
            }

            _sessionLease.Remove(streamId);
        }

        return stream.ClosedBecause == GatewayStopping;
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _renewLoop = RenewLoopAsync(_stopping.Token);
        _keepAliveLoop = KeepAliveLoopAsync(_stopping.Token);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        if (_renewLoop is not null)
        {
            await _renewLoop;
        }

        if (_keepAliveLoop is not null)
        {
            await _keepAliveLoop;
        }

        foreach (var feed in _feeds.Values)
        {
            await UnsubscribeQuietlyAsync(feed);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_stopping.IsCancellationRequested)
        {
            await _stopping.CancelAsync();
        }

        _stopping.Dispose();
        _fanout.Dispose();
    }

    private async Task WriteAsync(TailnetFeed feed, MapSubscriber subscriber, Func<MapMessage, CancellationToken, Task> send,
        CancellationToken cancellationToken)
    {
        Func<FullMapMessage> fullMap = () => feed.FullMap(subscriber);
        while (await subscriber.Stream.NextAsync(fullMap, cancellationToken) is { } message)
        {
            await send(message, cancellationToken);
            if (message is DeltaMessage { ChangedAt: var changedAt } && changedAt != default)
            {
                GatewayMetrics.DeltaSent(DateTimeOffset.UtcNow - changedAt);
            }
        }
    }

    /// <summary>A tailnet's nodes as this gateway follows them: every node first, then each batch's changes, until
    /// <paramref name="cancellationToken"/> ends it or the watcher falls behind (then the sequence just ends).</summary>
    public async IAsyncEnumerable<TailnetWatchUpdate> WatchAsync(string tailnet, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var feed = await FeedAsync(tailnet);
        var watch = new TailnetWatch();
        feed.Watch(watch);
        try
        {
            while (await watch.Updates.WaitToReadAsync(cancellationToken))
            {
                while (watch.Updates.TryRead(out var update))
                {
                    yield return update;
                }
            }
        }
        finally
        {
            feed.Unwatch(watch);
            watch.End();
        }
    }

    /// <summary>Whether the relay may carry packets between two nodes: this gateway follows their tailnet (the sender's
    /// map stream is here) and the policy pairs them. Cheap enough for every packet.</summary>
    public bool Pairs(string tailnet, string fromId, string toId) => _feeds.TryGetValue(tailnet, out var feed) && feed.Pairs(fromId, toId);

    private async Task<TailnetFeed> FeedAsync(string tailnet)
    {
        var feed = _feeds.GetOrAdd(tailnet, t => new TailnetFeed(t, _fanout));
        if (feed.IsInitialized)
        {
            return feed;
        }

        await feed.InitLock.WaitAsync();
        try
        {
            if (!feed.IsInitialized && await _grains.GetGrain<ITailnetGrain>(tailnet).Subscribe(Reference, feed.Version) is { } snapshot)
            {
                feed.Load(snapshot);
            }
        }
        finally
        {
            feed.InitLock.Release();
        }

        return feed;
    }

    private async Task ResyncAsync(TailnetFeed feed)
    {
        try
        {
            if (await _grains.GetGrain<ITailnetGrain>(feed.Tailnet).Subscribe(Reference, -1) is { } snapshot)
            {
                feed.Load(snapshot);
            }
        }
        catch (Exception exception)
        {
            LogRenewFailed(exception, feed.Tailnet);
        }
    }

    /// <summary>Observer subscriptions expire in the grain: renew them, and catch up when a tailnet grain restarted.</summary>
    private async Task RenewLoopAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(RenewInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                foreach (var feed in _feeds.Values)
                {
                    if (feed.IsIdle)
                    {
                        _feeds.TryRemove(feed.Tailnet, out _);
                        await UnsubscribeQuietlyAsync(feed);
                        continue;
                    }

                    try
                    {
                        if (await _grains.GetGrain<ITailnetGrain>(feed.Tailnet).Subscribe(Reference, feed.Version) is { } snapshot)
                        {
                            feed.Load(snapshot);
                        }
                    }
                    catch (Exception exception) when (exception is not OperationCanceledException)
                    {
                        LogRenewFailed(exception, feed.Tailnet);
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Keepalives for silent streams: one sweep over this gateway's streams every tenth of
    /// <c>Map:KeepAliveInterval</c>, so a keepalive follows a silence within 1.1 intervals, and no stream holds a timer.</summary>
    private async Task KeepAliveLoopAsync(CancellationToken cancellationToken)
    {
        var interval = _mapOptions.KeepAliveInterval;
        using var timer = new PeriodicTimer(TimeSpan.FromTicks(Math.Max(interval.Ticks / 10, TimeSpan.TicksPerMillisecond * 10)));
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                var now = Environment.TickCount64;
                foreach (var feed in _feeds.Values)
                {
                    feed.KeepAliveIfSilent(now, interval);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task UnsubscribeQuietlyAsync(TailnetFeed feed)
    {
        try
        {
            await _grains.GetGrain<ITailnetGrain>(feed.Tailnet).Unsubscribe(Reference);
        }
        catch (Exception exception)
        {
            LogRenewFailed(exception, feed.Tailnet);
        }
    }

    private async Task CloseSessionQuietlyAsync(INodeGrain node, string nodeId, string streamId)
    {
        try
        {
            await node.CloseSession(streamId, _sessionLease.Id);
        }
        catch (Exception exception)
        {
            // Unclosed, the session ends when this gateway's lease lapses instead.
            LogCloseFailed(exception, nodeId);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Map stream of node {NodeId} closed: {Reason}")]
    private partial void LogStreamClosed(string nodeId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Tailnet {Tailnet}: batch gap (have {Have}, batch follows {Previous}); resyncing")]
    private partial void LogGap(string tailnet, long have, long previous);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Closing the session of node {NodeId} failed; it ends when this gateway's lease lapses")]
    private partial void LogCloseFailed(Exception exception, string nodeId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Tailnet {Tailnet}: subscription renewal failed")]
    private partial void LogRenewFailed(Exception exception, string tailnet);
}
