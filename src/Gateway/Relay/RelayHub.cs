using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Threading.Channels;
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

    /// <summary>Packets per second one sender may relay (sustained); a burst of the same size is allowed.</summary>
    public int PacketsPerSecond { get; set; } = 20_000;
}

/// <summary>
/// The relay: agents without a direct path hand it opaque, already-encrypted WireGuard packets over one WebSocket each
/// (<c>GET /api/v1/machine/relay</c>, the node token as bearer), addressed to a peer by node id. It forwards only
/// between nodes of one tailnet that the policy pairs (<see cref="MapHub.Pairs"/>, checked per packet, so a node
/// removed or a permission withdrawn stops at once), through a bounded queue per receiver — a slow receiver loses its
/// own packets and stalls nobody — with a size limit and a token bucket per sender. It never decrypts anything.
/// <para>Frames: <see cref="RelayFrame"/>.</para>
/// <para>This step relays between agents connected to the same gateway; across gateways of a cluster is the next.</para>
/// </summary>
public sealed partial class RelayHub(MapHub maps, IOptions<RelayOptions> options, TimeProvider time, ILogger<RelayHub> logger)
{
    private readonly ConcurrentDictionary<string, Connection> _connections = new(StringComparer.Ordinal);
    private readonly RelayOptions _options = options.Value;

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
            _connections.TryRemove(new KeyValuePair<string, Connection>(nodeId, connection));
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
        }
    }

    private void Forward(Connection from, ReadOnlySpan<byte> frame, WebSocketMessageType type)
    {
        if (type != WebSocketMessageType.Binary || !RelayFrame.TryDecode(frame, out var toId, out var payload))
        {
            GatewayMetrics.RelayPacket("malformed", 0);
            return;
        }

        if (!from.TakeToken())
        {
            GatewayMetrics.RelayPacket("rate_limited", payload.Length);
            return;
        }

        if (!maps.Pairs(from.Tailnet, from.NodeId, toId))
        {
            GatewayMetrics.RelayPacket("not_paired", payload.Length);
            return;
        }

        if (!_connections.TryGetValue(toId, out var to))
        {
            GatewayMetrics.RelayPacket("no_route", payload.Length);
            return;
        }

        // Addressed by the sender's id for the receiver.
        GatewayMetrics.RelayPacket(to.Outbound.Writer.TryWrite(RelayFrame.Encode(from.NodeId, payload)) ? "delivered" : "queue_full", payload.Length);
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

    private sealed class Connection(string tailnet, string nodeId, WebSocket socket, RelayOptions options, TimeProvider time)
    {
        private readonly CancellationTokenSource _closed = new();
        private readonly Lock _bucketLock = new();
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

        /// <summary>The sender's token bucket: refilled at the configured rate, a burst of one second's worth.</summary>
        public bool TakeToken()
        {
            lock (_bucketLock)
            {
                var now = time.GetTimestamp();
                _tokens = Math.Min(options.PacketsPerSecond, _tokens + time.GetElapsedTime(_refilledAt, now).TotalSeconds * options.PacketsPerSecond);
                _refilledAt = now;
                if (_tokens < 1)
                {
                    return false;
                }

                _tokens--;
                return true;
            }
        }
    }
}
