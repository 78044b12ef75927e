using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Threading.Channels;
using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Gateway.Map;
using EphemeralOrleans.Gateway.Telemetry;
using EphemeralOrleans.Protocol;
using Microsoft.Extensions.Options;

namespace EphemeralOrleans.Gateway.Relay;

/// <summary>What the relay allows: packet size, the queue each receiver has, and each sender's rate.</summary>
public sealed class RelayOptions
{
    /// <summary>The largest payload relayed (a WireGuard packet on a 1,420-byte tunnel MTU is ~1,500 bytes).</summary>
    public int MaxPacketBytes { get; set; } = 2048;

    /// <summary>Packets waiting for one receiver; past it, that receiver's new packets are dropped (never anyone else's).</summary>
    public int QueuePackets { get; set; } = 512;

    /// <summary>Packets per second one sender may relay (sustained; a burst of the same size is allowed). Past it the
    /// relay stops reading the sender's connection for a while: the sender is slowed by TCP, and its flood costs the
    /// gateway no more than this rate.</summary>
    public int PacketsPerSecond { get; set; } = 20_000;
}

/// <summary>
/// The relay: agents without a direct path hand it opaque, already-encrypted WireGuard packets over one WebSocket each
/// (<c>GET /api/v1/machine/relay</c>, the node token as bearer), addressed to a peer by node id. It forwards only
/// between nodes of one tailnet that the policy pairs (<see cref="MapHub.Pairs"/>, checked per packet, so a node
/// removed or a permission withdrawn stops at once), through a bounded queue per receiver — a slow receiver loses its
/// own packets and stalls nobody — with a size limit and a token bucket per sender. It never decrypts anything.
/// <para>Frames: <see cref="RelayFrame"/>.</para>
/// <para>
/// In a cluster the receiver's connection may be on another gateway. Each gateway has one <see cref="IRelayObserver"/>
/// (this hub) and attaches it to the <see cref="IRelayRouteGrain"/> of every node connected here. A packet for a node
/// not connected here, once the policy check passed, waits in a bounded queue for that node; one call at a time takes
/// what has gathered to the node's route grain, which passes it one-way to the holding gateway — so batches grow with
/// the load and order is kept. A node connected nowhere is remembered as such for a second (its packets dropped here,
/// without a call).
/// </para>
/// </summary>
public sealed partial class RelayHub(MapHub maps, IGrainFactory grains, IOptions<RelayOptions> options, TimeProvider time, ILogger<RelayHub> logger)
    : IRelayObserver, IHostedService
{
    /// <summary>How often each connection's route is attached again (rebuilding it after a silo failure).</summary>
    public static readonly TimeSpan AttachInterval = TimeSpan.FromSeconds(60);

    /// <summary>How long a node found connected nowhere gets no calls for its packets.</summary>
    private static readonly TimeSpan AbsentFor = TimeSpan.FromSeconds(1);

    /// <summary>How long a queue for a node on another gateway outlives its last packet.</summary>
    private static readonly TimeSpan RouteIdle = TimeSpan.FromSeconds(30);

    /// <summary>The most packets one cluster call carries.</summary>
    private const int BatchPackets = 256;

    private readonly ConcurrentDictionary<string, Connection> _connections = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, RemoteRoute> _routes = new(StringComparer.Ordinal);
    private readonly RelayOptions _options = options.Value;
    private readonly CancellationTokenSource _stopping = new();
    private IRelayObserver? _reference;
    private Task _attaching = Task.CompletedTask;

    private IRelayObserver Reference => _reference ??= grains.CreateObjectReference<IRelayObserver>(this);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _attaching = Task.Run(() => AttachLoopAsync(_stopping.Token), CancellationToken.None);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        await _attaching;
        // Agents reconnect elsewhere and attach there; detaching here only spares a second of dropped packets.
        await Task.WhenAll(_connections.Values.Select(c => DetachAsync(c)));
    }

    /// <summary>Packets from another gateway for agents connected here (the policy was checked there).</summary>
    public Task Deliver(RelayBatch batch)
    {
        for (var i = 0; i < batch.Packets.Length; i++)
        {
            if (_connections.TryGetValue(batch.To, out var to) && to.Tailnet == batch.Tailnet)
            {
                GatewayMetrics.RelayPacket(to.Outbound.Writer.TryWrite(RelayFrame.Encode(batch.From[i], batch.Packets[i])) ? "delivered" : "queue_full", batch.Packets[i].Length);
            }
            else
            {
                GatewayMetrics.RelayPacket("no_route", batch.Packets[i].Length);
            }
        }

        return Task.CompletedTask;
    }

    /// <summary>Relay connections open on this gateway now.</summary>
    public int ConnectionCount => _connections.Count;

    /// <summary>Runs one agent's relay connection until it closes; a newer connection of the same node replaces it.</summary>
    public async Task RunAsync(WebSocket socket, string tailnet, string nodeId, CancellationToken cancellationToken)
    {
        var connection = new Connection(tailnet, nodeId, socket, _options, time);
        if (_connections.TryGetValue(nodeId, out var previous))
        {
            previous.Close();
        }

        _connections[nodeId] = connection;
        GatewayMetrics.RelayOpened();
        LogOpened(nodeId, tailnet);
        await AttachAsync(connection);
        using var stopping = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, connection.Closed);
        var sending = SendLoopAsync(connection, stopping.Token);
        try
        {
            await ReceiveLoopAsync(connection, stopping.Token);
        }
        catch (Exception exception) when (exception is WebSocketException or OperationCanceledException)
        {
            // The agent went away (or was replaced): nothing to report.
        }
        finally
        {
            if (_connections.TryRemove(new KeyValuePair<string, Connection>(nodeId, connection)))
            {
                await DetachAsync(connection);
            }

            connection.Close();
            await sending;
            GatewayMetrics.RelayClosed();
            LogClosed(nodeId, tailnet);
        }
    }

    private async Task ReceiveLoopAsync(Connection from, CancellationToken cancellationToken)
    {
        var buffer = new byte[1 + 255 + _options.MaxPacketBytes];
        while (true)
        {
            var length = 0;
            ValueWebSocketReceiveResult result;
            do
            {
                if (length == buffer.Length)
                {
                    await from.Socket.CloseOutputAsync(WebSocketCloseStatus.MessageTooBig, $"frames are at most {buffer.Length} bytes", cancellationToken);
                    return;
                }

                result = await from.Socket.ReceiveAsync(buffer.AsMemory(length), cancellationToken);
                length += result.Count;
            }
            while (!result.EndOfMessage && result.MessageType != WebSocketMessageType.Close);

            if (result.MessageType == WebSocketMessageType.Close)
            {
                await from.Socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, cancellationToken);
                return;
            }

            Forward(from, buffer.AsSpan(0, length), result.MessageType);
            if (from.TakeToken() is { } wait)
            {
                GatewayMetrics.RelayThrottled();
                await Task.Delay(wait, time, cancellationToken);
            }
        }
    }

    private void Forward(Connection from, ReadOnlySpan<byte> frame, WebSocketMessageType type)
    {
        if (type != WebSocketMessageType.Binary || !RelayFrame.TryDecode(frame, out var toId, out var payload))
        {
            GatewayMetrics.RelayPacket("malformed", 0);
            return;
        }

        if (!maps.Pairs(from.Tailnet, from.NodeId, toId))
        {
            GatewayMetrics.RelayPacket("not_paired", payload.Length);
            return;
        }

        if (_connections.TryGetValue(toId, out var to))
        {
            // Addressed by the sender's id for the receiver.
            GatewayMetrics.RelayPacket(to.Outbound.Writer.TryWrite(RelayFrame.Encode(from.NodeId, payload)) ? "delivered" : "queue_full", payload.Length);
            return;
        }

        ForwardToCluster(from, toId, payload);
    }

    /// <summary>Queues a packet for a node whose connection is not here (see the class summary).</summary>
    private void ForwardToCluster(Connection from, string toId, ReadOnlySpan<byte> payload)
    {
        var key = RelayRouteKey.Of(from.Tailnet, toId);
        for (var attempt = 0; attempt < 2; attempt++)
        {
            var route = _routes.GetOrAdd(key, _ => StartRoute(from.Tailnet, toId, key));
            if (time.GetTimestamp() < route.AbsentUntil)
            {
                GatewayMetrics.RelayPacket("no_route", payload.Length);
                return;
            }

            if (route.Queue.Writer.TryWrite((from.NodeId, payload.ToArray())))
            {
                return;
            }

            if (!route.Closed)
            {
                GatewayMetrics.RelayPacket("queue_full", payload.Length);
                return;
            }

            // The queue just closed for idleness: a new one takes the packet.
        }
    }

    private RemoteRoute StartRoute(string tailnet, string toId, string key)
    {
        var route = new RemoteRoute(_options.QueuePackets);
        _ = Task.Run(() => PumpRouteAsync(route, tailnet, toId, key, _stopping.Token), CancellationToken.None);
        return route;
    }

    /// <summary>One call at a time, each with what has gathered, to the node's route grain.</summary>
    private async Task PumpRouteAsync(RemoteRoute route, string tailnet, string toId, string key, CancellationToken cancellationToken)
    {
        var grain = grains.GetGrain<IRelayRouteGrain>(key);
        var reader = route.Queue.Reader;
        var from = new List<string>(BatchPackets);
        var packets = new List<byte[]>(BatchPackets);
        try
        {
            while (true)
            {
                if (!reader.TryPeek(out _))
                {
                    using var idle = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                    idle.CancelAfter(RouteIdle);
                    try
                    {
                        if (!await reader.WaitToReadAsync(idle.Token))
                        {
                            return; // closed and drained
                        }
                    }
                    catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                    {
                        _routes.TryRemove(new KeyValuePair<string, RemoteRoute>(key, route));
                        route.Close();
                        continue; // what slipped in meanwhile still goes
                    }
                }

                from.Clear();
                packets.Clear();
                while (packets.Count < BatchPackets && reader.TryRead(out var item))
                {
                    from.Add(item.From);
                    packets.Add(item.Packet);
                }

                bool delivered;
                try
                {
                    delivered = await grain.Deliver(new RelayBatch(tailnet, toId, [.. from], [.. packets]));
                }
                catch (Exception exception) when (exception is not OperationCanceledException)
                {
                    LogClusterFailure(exception, toId);
                    delivered = false;
                }

                foreach (var packet in packets)
                {
                    GatewayMetrics.RelayPacket(delivered ? "forwarded" : "no_route", packet.Length);
                }

                if (!delivered)
                {
                    route.AbsentUntil = time.GetTimestamp() + (long)(AbsentFor.TotalSeconds * time.TimestampFrequency);
                    while (reader.TryRead(out var dropped))
                    {
                        GatewayMetrics.RelayPacket("no_route", dropped.Packet.Length);
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task AttachLoopAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(AttachInterval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                foreach (var connection in _connections.Values)
                {
                    await AttachAsync(connection);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task AttachAsync(Connection connection)
    {
        try
        {
            await grains.GetGrain<IRelayRouteGrain>(RelayRouteKey.Of(connection.Tailnet, connection.NodeId)).Attach(Reference);
        }
        catch (Exception exception)
        {
            // Agents on this gateway still reach it; others do once the next attach succeeds.
            LogClusterFailure(exception, connection.NodeId);
        }
    }

    private async Task DetachAsync(Connection connection)
    {
        try
        {
            await grains.GetGrain<IRelayRouteGrain>(RelayRouteKey.Of(connection.Tailnet, connection.NodeId)).Detach(Reference);
        }
        catch (Exception exception)
        {
            LogClusterFailure(exception, connection.NodeId);
        }
    }

    private static async Task SendLoopAsync(Connection connection, CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var frame in connection.Outbound.Reader.ReadAllAsync(cancellationToken))
            {
                await connection.Socket.SendAsync(frame, WebSocketMessageType.Binary, endOfMessage: true, cancellationToken);
            }
        }
        catch (Exception exception) when (exception is WebSocketException or OperationCanceledException)
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Relay connection of node {NodeId} in {Tailnet} opened")]
    private partial void LogOpened(string nodeId, string tailnet);

    [LoggerMessage(Level = LogLevel.Information, Message = "Relay connection of node {NodeId} in {Tailnet} closed")]
    private partial void LogClosed(string nodeId, string tailnet);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Relay: the cluster call for node {NodeId} failed")]
    private partial void LogClusterFailure(Exception exception, string nodeId);

    /// <summary>Packets for one node connected to another gateway, waiting for the next cluster call.</summary>
    private sealed class RemoteRoute(int capacity)
    {
        public Channel<(string From, byte[] Packet)> Queue { get; } = Channel.CreateBounded<(string, byte[])>(
            new BoundedChannelOptions(capacity) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });

        /// <summary>Until when (a <see cref="TimeProvider"/> timestamp) the node is taken to be connected nowhere.</summary>
        public long AbsentUntil { get; set; }

        public bool Closed { get; private set; }

        public void Close()
        {
            Closed = true;
            Queue.Writer.TryComplete();
        }
    }

    private sealed class Connection(string tailnet, string nodeId, WebSocket socket, RelayOptions options, TimeProvider time)
    {
        private readonly CancellationTokenSource _closed = new();
        private double _tokens = options.PacketsPerSecond;
        private long _refilledAt = time.GetTimestamp();

        public string Tailnet { get; } = tailnet;

        public string NodeId { get; } = nodeId;

        public WebSocket Socket { get; } = socket;

        public Channel<byte[]> Outbound { get; } = Channel.CreateBounded<byte[]>(
            new BoundedChannelOptions(options.QueuePackets) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });

        public CancellationToken Closed => _closed.Token;

        public void Close()
        {
            Outbound.Writer.TryComplete();
            _closed.Cancel();
        }

        /// <summary>The sender's token bucket (refilled at the configured rate, a burst of one second's worth): takes one
        /// for the frame just read; when the bucket is empty, how long to stop reading — at least 10 ms, so the pause
        /// outlasts the timer's resolution and lets a batch of tokens gather.</summary>
        public TimeSpan? TakeToken()
        {
            var now = time.GetTimestamp();
            _tokens = Math.Min(options.PacketsPerSecond, _tokens + time.GetElapsedTime(_refilledAt, now).TotalSeconds * options.PacketsPerSecond);
            _refilledAt = now;
            _tokens--;
            return _tokens >= 0 ? null : TimeSpan.FromSeconds(Math.Max(0.010, -_tokens / options.PacketsPerSecond));
        }
    }
}
