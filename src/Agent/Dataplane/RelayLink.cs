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
/// <para>
/// Relaying is kept only while no direct path works. A peer's socket listens on every address, and now and then
/// (<see cref="ProbeInterval"/>, for <see cref="ProbeWindow"/>) the packets the device sends to a relayed peer also go
/// straight to the peer's direct endpoint (<see cref="SetDirect"/>), each ahead of its copy through the relay. Where that path is open the peer's device
/// takes the packet (the relayed copy arrives second and is dropped as a replay), roams to this socket and sends its
/// next packets straight to it: a packet arriving from anywhere but loopback is proof that the path works both ways,
/// and <c>directHeard</c> says so (the reconciler then points the device at the peer directly). It is handed to the
/// device like a relayed one, so nothing is lost meanwhile; WireGuard authenticates it either way.
/// </para>
/// </summary>
public sealed class RelayLink(Uri loginServer, GatewayTrust trust, Func<string?> nodeToken, int deviceListenPort, AgentOutput output, Action<string, IPEndPoint> directHeard) : IAsyncDisposable
{
    private readonly HttpMessageInvoker _http = new(trust.CreateHandler());

    /// <summary>How often a relayed peer's direct endpoint is tried: often at first (a path that opens is used within a
    /// second or so), less once the peer has been relayed a while.</summary>
    public static TimeSpan ProbeInterval(TimeSpan relayedFor) => relayedFor < TimeSpan.FromSeconds(10) ? TimeSpan.FromMilliseconds(500) : TimeSpan.FromSeconds(2);

    /// <summary>How long each try lasts: every packet to the peer meanwhile goes both ways. One copy alone would not do —
    /// the peer's device roams back to the relay with the next relayed packet, before it has answered.</summary>
    public static readonly TimeSpan ProbeWindow = TimeSpan.FromMilliseconds(100);

    private readonly ConcurrentDictionary<string, PeerPort> _ports = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<int, PeerPort> _portsByNumber = new();
    private readonly Lock _portsLock = new();
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

    public bool IsRelayed(IPEndPoint? endpoint) =>
        endpoint is not null && IPAddress.IsLoopback(endpoint.Address) && _portsByNumber.TryGetValue(endpoint.Port, out var port) && port.Local.Equals(endpoint);

    /// <summary>Closes <paramref name="peerId"/>'s socket: the peer left the netmap.</summary>
    public void Remove(string peerId)
    {
        if (_ports.TryRemove(peerId, out var port))
        {
            _portsByNumber.TryRemove(port.Local.Port, out _);
            port.Dispose();
        }
    }

    /// <summary>Where to try <paramref name="peerId"/> directly while it is relayed (null: nowhere). Starts the tries
    /// afresh, and a peer heard directly before may be heard again.</summary>
    public void SetDirect(string peerId, IPEndPoint? direct) => Port(peerId).SetDirect(direct);

    /// <summary>No more direct tries for <paramref name="peerId"/>: the device sends to it directly again.</summary>
    public void StopProbing(string peerId)
    {
        if (_ports.TryGetValue(peerId, out var port))
        {
            port.SetDirect(null);
        }
    }

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

        _http.Dispose();
    }

    private PeerPort Port(string peerId)
    {
        if (_ports.TryGetValue(peerId, out var port))
        {
            return port;
        }

        // Made once: the relay's receive loop and the reconciler may ask at the same moment.
        lock (_portsLock)
        {
            if (_ports.TryGetValue(peerId, out port))
            {
                return port;
            }

            port = new PeerPort(peerId);
            _portsByNumber[port.Local.Port] = port;
            _ports[peerId] = port;
        }

        _ = PumpFromDeviceAsync(port, _stopping.Token);
        return port;
    }

    /// <summary>Datagrams the device sends to a peer's socket go to the relay (and, when a try is due, straight to the
    /// peer first); datagrams the peer sends to it directly go to the device.</summary>
    private async Task PumpFromDeviceAsync(PeerPort port, CancellationToken cancellationToken)
    {
        var buffer = new byte[65536];
        try
        {
            while (true)
            {
                var received = await port.Socket.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0), cancellationToken);
                var from = (IPEndPoint)received.RemoteEndPoint;
                var packet = buffer.AsMemory(0, received.ReceivedBytes);
                if (from.Equals(_device))
                {
                    if (port.ProbeDue(DateTimeOffset.UtcNow) is { } direct)
                    {
                        try
                        {
                            await port.Socket.SendToAsync(packet, SocketFlags.None, direct, cancellationToken);
                        }
                        catch (SocketException)
                        {
                            // No way there (a firewall refuses it, no route): that is what the try finds out.
                        }
                    }

                    _outbound.Writer.TryWrite((port.PeerId, packet.ToArray()));
                }
                else if (!IPAddress.IsLoopback(from.Address))
                {
                    await port.Socket.SendToAsync(packet, SocketFlags.None, _device, cancellationToken);
                    if (port.Heard(from))
                    {
                        directHeard(port.PeerId, from);
                    }
                }
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
                await socket.ConnectAsync(url, _http, cancellationToken);
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
        private readonly Lock _lock = new();
        private IPEndPoint? _direct;
        private DateTimeOffset _probingSince;
        private DateTimeOffset _nextProbe;
        private DateTimeOffset _probeUntil;
        private IPEndPoint? _heardFrom;

        public PeerPort(string peerId)
        {
            PeerId = peerId;
            Socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            // Every address, not only loopback: the peer's device answers a direct try here.
            Socket.Bind(new IPEndPoint(IPAddress.Any, 0));
            Local = new IPEndPoint(IPAddress.Loopback, ((IPEndPoint)Socket.LocalEndPoint!).Port);
        }

        public string PeerId { get; }

        public Socket Socket { get; }

        /// <summary>Where the device sends to this peer.</summary>
        public IPEndPoint Local { get; }

        public void SetDirect(IPEndPoint? direct)
        {
            lock (_lock)
            {
                // IPv4 only: the socket is.
                _direct = direct?.AddressFamily == AddressFamily.InterNetwork ? direct : null;
                _probingSince = _nextProbe = DateTimeOffset.UtcNow;
                _heardFrom = null;
            }
        }

        /// <summary>Where to send a copy of the device's packet now, if a try is due.</summary>
        public IPEndPoint? ProbeDue(DateTimeOffset now)
        {
            lock (_lock)
            {
                if (_direct is null)
                {
                    return null;
                }

                if (now >= _nextProbe)
                {
                    _probeUntil = now + ProbeWindow;
                    _nextProbe = now + ProbeInterval(now - _probingSince);
                }

                return now < _probeUntil ? _direct : null;
            }
        }

        /// <summary>Whether <paramref name="from"/> is news: the first direct packet since the tries started.</summary>
        public bool Heard(IPEndPoint from)
        {
            lock (_lock)
            {
                if (from.Equals(_heardFrom))
                {
                    return false;
                }

                _heardFrom = from;
                return true;
            }
        }

        public void Dispose() => Socket.Dispose();
    }
}
