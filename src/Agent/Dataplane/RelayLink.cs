using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Threading.Channels;
using EphemeralOrleans.Agent.Cli;
using EphemeralOrleans.Agent.Control;
using EphemeralOrleans.Protocol;

namespace EphemeralOrleans.Agent.Dataplane;

/// <summary>
/// The agent's side of the gateway's relay, for peers with no direct path. Each relayed peer gets a UDP socket on
/// loopback that the WireGuard device uses as that peer's endpoint: what the device sends there goes over one
/// WebSocket to the gateway (<c>/api/v1/machine/relay</c>, the node token as bearer), addressed by the peer's node id;
/// what the relay brings from a peer is handed to the device from that peer's socket — so the device sees an ordinary
/// endpoint and encrypts and decrypts as always (the relay only ever sees WireGuard's ciphertext). A peer that starts
/// relaying to this node gets its socket when its first packet arrives; the device then roams to it.
/// </summary>
public sealed class RelayLink(Uri loginServer, Func<string?> nodeToken, int deviceListenPort, AgentOutput output) : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, PeerPort> _ports = new(StringComparer.Ordinal);
    private readonly Channel<(string PeerId, byte[] Packet)> _outbound = Channel.CreateBounded<(string, byte[])>(
        new BoundedChannelOptions(1024) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });
    private readonly CancellationTokenSource _stopping = new();
    private readonly IPEndPoint _device = new(IPAddress.Loopback, deviceListenPort);
    private Task _running = Task.CompletedTask;

    /// <summary>Whether a WebSocket to the relay is open now.</summary>
    public bool Connected { get; private set; }

    public void Start() => _running = Task.Run(() => RunAsync(_stopping.Token));

    /// <summary>The loopback endpoint the device should use for <paramref name="peerId"/> (made on first use).</summary>
    public IPEndPoint EndpointFor(string peerId) => Port(peerId).Local;

    public bool IsRelayed(IPEndPoint? endpoint) => endpoint is not null && _ports.Values.Any(p => p.Local.Equals(endpoint));

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        _outbound.Writer.TryComplete();
        try
        {
            await _running;
        }
        catch (OperationCanceledException)
        {
        }

        foreach (var port in _ports.Values)
        {
            port.Dispose();
        }
    }

    private PeerPort Port(string peerId) => _ports.GetOrAdd(peerId, id =>
    {
        var port = new PeerPort(id);
        _ = PumpFromDeviceAsync(port, _stopping.Token);
        return port;
    });

    /// <summary>Datagrams the device sends to a peer's loopback socket go to the relay.</summary>
    private async Task PumpFromDeviceAsync(PeerPort port, CancellationToken cancellationToken)
    {
        var buffer = new byte[65536];
        try
        {
            while (true)
            {
                var received = await port.Socket.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Loopback, 0), cancellationToken);
                _outbound.Writer.TryWrite((port.PeerId, buffer[..received.ReceivedBytes]));
            }
        }
        catch (Exception exception) when (exception is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        var backoff = new Backoff(TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(5));
        var url = new UriBuilder(loginServer) { Scheme = loginServer.Scheme == "https" ? "wss" : "ws", Path = "/api/v1/machine/relay" }.Uri;
        while (!cancellationToken.IsCancellationRequested)
        {
            using var socket = new ClientWebSocket();
            socket.Options.SetRequestHeader("Authorization", "Bearer " + nodeToken());
            socket.Options.KeepAliveInterval = TimeSpan.FromSeconds(25);
            try
            {
                await socket.ConnectAsync(url, cancellationToken);
                Connected = true;
                backoff.Reset();
                output.Event("relay_connected", null, "");
                using var session = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                var sending = SendLoopAsync(socket, session.Token);
                await ReceiveLoopAsync(socket, session.Token);
                await session.CancelAsync();
                await sending;
            }
            catch (Exception exception) when (exception is WebSocketException or OperationCanceledException or HttpRequestException)
            {
                if (cancellationToken.IsCancellationRequested)
                {
                    return;
                }
            }
            finally
            {
                Connected = false;
            }

            await Task.Delay(backoff.Next(), cancellationToken);
        }
    }

    private async Task SendLoopAsync(WebSocket socket, CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var (peerId, packet) in _outbound.Reader.ReadAllAsync(cancellationToken))
            {
                await socket.SendAsync(RelayFrame.Encode(peerId, packet), WebSocketMessageType.Binary, endOfMessage: true, cancellationToken);
            }
        }
        catch (Exception exception) when (exception is WebSocketException or OperationCanceledException)
        {
        }
    }

    /// <summary>Packets from the relay go to the device from the sending peer's loopback socket.</summary>
    private async Task ReceiveLoopAsync(WebSocket socket, CancellationToken cancellationToken)
    {
        var buffer = new byte[65536];
        while (true)
        {
            var length = 0;
            ValueWebSocketReceiveResult result;
            do
            {
                result = await socket.ReceiveAsync(buffer.AsMemory(length), cancellationToken);
                length += result.Count;
            }
            while (!result.EndOfMessage && length < buffer.Length);

            if (result.MessageType == WebSocketMessageType.Close)
            {
                return;
            }

            if (!RelayFrame.TryDecode(buffer.AsSpan(0, length), out var peerId, out _))
            {
                continue;
            }

            var idLength = buffer[0];
            await Port(peerId).Socket.SendToAsync(buffer.AsMemory(1 + idLength, length - 1 - idLength), SocketFlags.None, _device, cancellationToken);
        }
    }

    private sealed class PeerPort : IDisposable
    {
        public PeerPort(string peerId)
        {
            PeerId = peerId;
            Socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            Socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            Local = (IPEndPoint)Socket.LocalEndPoint!;
        }

        public string PeerId { get; }

        public Socket Socket { get; }

        public IPEndPoint Local { get; }

        public void Dispose() => Socket.Dispose();
    }
}
