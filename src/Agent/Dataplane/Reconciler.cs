using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Diagnostics;
using System.Net;
using System.Threading.Channels;
using EphemeralOrleans.Agent.Cli;
using EphemeralOrleans.Agent.Control;
using EphemeralOrleans.Agent.State;
using EphemeralOrleans.Protocol;
using EphemeralOrleans.Protocol.V1;

namespace EphemeralOrleans.Agent.Dataplane;

/// <summary>
/// Keeps the data plane equal to the latest netmap: <see cref="UpAsync"/> makes the device (after clearing what a
/// killed agent left under the same name), <see cref="Offer"/> hands it netmaps — only the latest waits, with what
/// changed since the last apply merged, so a slow step never queues old maps and the map stream never waits for OS
/// tools — and each is compiled (<see cref="ConfigCompiler"/>) and applied as a difference: the packet filter when its
/// text changed, the peers a delta names by key through one UAPI transaction, addresses and routes through the
/// <see cref="Router"/>. Peers that come online are checked for a first handshake (<see cref="HandshakeWatch"/>).
/// <see cref="DisposeAsync"/> removes it all.
/// </summary>
public sealed class Reconciler : IAsyncDisposable
{
    private readonly string _device;
    private readonly byte[] _privateKey;
    private readonly int _listenPort;
    private readonly string _wireguardGo;
    private readonly AgentOutput _output;
    /// <summary>Wakes the apply loop; what to apply waits in <see cref="_pending"/>, merged, so a slow step never queues
    /// old maps (and the map stream never waits for OS tools).</summary>
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(
        new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });
    private readonly Lock _pendingLock = new();
    private Pending? _pending;
    private bool _resyncNext;
    private readonly TaskCompletionSource<Exception> _failed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stopping = new();
    private readonly Router _router;
    private readonly PacketFilter _filter;
    private WireGuardDevice? _wireGuard;
    private Task _applying = Task.CompletedTask;
    /// <summary>The peers the device has, by public key, and each node's key.</summary>
    private readonly Dictionary<string, PeerConfig> _peers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _keyOfNode = new(StringComparer.Ordinal);
    private readonly HandshakeWatch _handshakes;

    /// <summary>Peers to move to the relay when still without a session — the same schedule as the handshake checks, one
    /// side first, with the relay's delay — and those moved.</summary>
    private readonly HandshakeWatch _relayChecks;
    private readonly HashSet<string> _relayed = new(StringComparer.Ordinal);
    private RelayLink? _relay;

    /// <summary>Per peer (by key): the endpoint the netmap gives it, and where it was heard directly when that differs
    /// (behind a NAT): a later delta keeps a path that works.</summary>
    private readonly Dictionary<string, IPEndPoint?> _netmapEndpoints = new(StringComparer.Ordinal);
    private readonly Dictionary<string, IPEndPoint> _heardAt = new(StringComparer.Ordinal);

    /// <summary>Relayed peers heard directly (from <see cref="RelayLink"/>'s sockets), to move to the direct path.</summary>
    private readonly ConcurrentQueue<(string NodeId, IPEndPoint From)> _heardDirectly = new();
    private readonly PathMonitor _paths = new(DirectSilence, DirectQuiet);
    private DateTimeOffset _nextPathCheck;

    /// <summary>How often the device's counters are read to follow each online peer's path (see
    /// <see cref="FollowPathsAsync"/>): every 250 ms up to 1,000 online peers, less often beyond (reading them costs
    /// about as much per peer), so that following paths stays a small share of a core; never with none online.</summary>
    public static TimeSpan PathCheckInterval(int peers) => TimeSpan.FromMilliseconds(Math.Max(250, peers / 4.0));

    /// <summary>How long a direct path may leave this side's packets unanswered before the peer is relayed: with the
    /// check interval, traffic is on the relay about a second after the path closes — before TCP's third
    /// retransmission (1.4 s), so a connection's pause stays short.</summary>
    public static readonly TimeSpan DirectSilence = TimeSpan.FromMilliseconds(750);

    /// <summary>Seconds between keepalives to a relayed peer: the direct tries ride on what the device sends, so an idle
    /// relayed pair still tries its direct path every few seconds (a keepalive through the relay is 32 bytes).</summary>
    public const int RelayedKeepaliveSeconds = 5;

    /// <summary>How long an online peer on a direct path may send nothing at all (it keeps alive every 25 s).</summary>
    public static readonly TimeSpan DirectQuiet = TimeSpan.FromSeconds(ConfigCompiler.KeepaliveSeconds * 2 + 5);

    /// <summary>How long a peer that came online may go without a first handshake before this side starts one afresh.</summary>
    public static readonly TimeSpan HandshakeCheckDelay = TimeSpan.FromMilliseconds(300);

    // relayAfter: how long a peer that came online may go without a session on its direct endpoint before it is
    // relayed (the side with the greater key; the other after twice that).
    public Reconciler(string device, NodeIdentity identity, int listenPort, string wireguardGo, AgentOutput output, TimeSpan relayAfter)
    {
        (_device, _privateKey, _listenPort, _wireguardGo, _output) = (device, identity.PrivateKey, listenPort, wireguardGo, output);
        _router = new Router(device);
        _filter = new PacketFilter();
        var ownKey = identity.NodeKey[KeyText.NodeKeyPrefix.Length..];
        _handshakes = new HandshakeWatch(ownKey, HandshakeCheckDelay);
        _relayChecks = new HandshakeWatch(ownKey, relayAfter);
    }

    /// <summary>Completes when the data plane broke for good (the device died): the agent should stop.</summary>
    public Task<Exception> Failed => _failed.Task;

    /// <summary>When the last netmap was applied, and how long it took from offer to applied (for status and benches).</summary>
    public (DateTimeOffset At, TimeSpan Took, int Peers)? LastApplied { get; private set; }

    /// <summary>Removes what an agent killed with <c>kill -9</c> left under <paramref name="device"/>: a device whose
    /// owner is gone, its link, its UAPI socket. Refuses when a live agent owns the name.</summary>
    public static async Task CleanupAsync(string device, CancellationToken cancellationToken)
    {
        foreach (var (pid, parent) in WireGuardProcesses(device))
        {
            if (parent > 1 && ProcessAlive(parent))
            {
                throw new DataplaneException($"The interface name {device} is in use by another agent (pid {parent}); choose another --tun.");
            }

            try
            {
                using var stale = Process.GetProcessById(pid);
                stale.Kill();
                await stale.WaitForExitAsync(cancellationToken);
            }
            catch (ArgumentException)
            {
                // Gone meanwhile.
            }
        }

        if ((await SystemTools.TryRunAsync("ip", ["link", "show", "dev", device], cancellationToken: cancellationToken)).ExitCode == 0)
        {
            await SystemTools.RunAsync("ip", ["link", "delete", "dev", device], cancellationToken: cancellationToken);
        }

        File.Delete(WireGuardDevice.SocketPath(device));
        await PacketFilter.RemoveAsync(device, cancellationToken);
    }

    /// <summary>Clears leftovers, starts the device with the node's key and listen port, and starts applying netmaps.</summary>
    public async Task UpAsync(CancellationToken cancellationToken)
    {
        await CleanupAsync(_device, cancellationToken);
        _wireGuard = await WireGuardDevice.StartAsync(_device, _wireguardGo, cancellationToken);
        // Nothing comes in until the first map says what may.
        await _filter.SetAsync(FilterCompiler.Compile(_device, [], []), cancellationToken);
        // Up (and so listening on its UDP port) before the node registers: a peer that learns of this node at once and
        // starts a handshake finds it answering, instead of retrying after WireGuard's 5 s.
        await SystemTools.RunAsync("ip", ["link", "set", "dev", _device, "up"], cancellationToken: cancellationToken);
        await _wireGuard.SetAsync([$"private_key={Convert.ToHexStringLower(_privateKey)}", $"listen_port={_listenPort}", "replace_peers=true"], cancellationToken);
        _output.Event("interface_up", new { device = _device, listenPort = _listenPort }, $"interface {_device} up, WireGuard on UDP {_listenPort}");
        _applying = Task.Run(() => ApplyLoopAsync(_stopping.Token), CancellationToken.None);
    }

    /// <summary>Uses the gateway's relay for peers with no direct path (once the node has a token).</summary>
    public void StartRelay(Uri loginServer, GatewayTrust trust, Func<string?> nodeToken)
    {
        _relay = new RelayLink(loginServer, trust, nodeToken, _listenPort, _output, (nodeId, from) =>
        {
            _heardDirectly.Enqueue((nodeId, from));
            _wake.Writer.TryWrite(true);
        });
        _relay.Start();
    }

    /// <summary>Hands over the netmap <paramref name="message"/> produced: what it changed is merged with what still
    /// waits, so the loop applies the latest map once, touching only what changed since the last apply.</summary>
    public void Offer(NetmapSnapshot netmap, MapResponse message)
    {
        lock (_pendingLock)
        {
            var pending = _pending ??= new Pending(netmap);
            pending.Netmap = netmap;
            switch (message.MessageCase)
            {
                case MapResponse.MessageOneofCase.Full:
                    pending.All = true;
                    break;
                case MapResponse.MessageOneofCase.Delta:
                    pending.Peers.UnionWith(message.Delta.PeersChanged.Select(p => p.Id));
                    pending.Peers.UnionWith(message.Delta.PeersRemoved);
                    // Presence decides keepalives (see ConfigCompiler).
                    pending.Peers.UnionWith(message.Delta.PeersChangedPatch.Select(p => p.Id));
                    pending.Filter |= message.Delta.PacketFilter is not null;
                    pending.Self |= message.Delta.Self is not null;
                    break;
                default:
                    return; // a keepalive changes nothing
            }

            pending.All |= _resyncNext;
            _resyncNext = false;
        }

        _wake.Writer.TryWrite(true);
    }

    /// <summary>For <c>status</c>: the device, and each peer of <paramref name="netmap"/> as the device reports it —
    /// the endpoint it last heard from (or dials), its last handshake, bytes each way.</summary>
    public async Task<object> StatusAsync(NetmapSnapshot netmap, CancellationToken cancellationToken)
    {
        var stats = _wireGuard is { HasExited: false } device
            ? (await device.GetAsync(cancellationToken)).ToDictionary(p => p.PublicKeyHex, StringComparer.Ordinal)
            : [];
        return new
        {
            device = _device,
            listenPort = _listenPort,
            lastApply = LastApplied is { } applied ? new { at = applied.At, milliseconds = applied.Took.TotalMilliseconds, peers = applied.Peers } : null,
            peers = netmap.PeersByName().Select(peer =>
            {
                var seen = stats.GetValueOrDefault(Convert.ToHexStringLower(peer.PublicKey.AsSpan()));
                return new
                {
                    id = peer.Id,
                    name = peer.Name,
                    ipv4 = peer.Wire.Ipv4,
                    ipv6 = peer.Wire.Ipv6,
                    online = peer.Wire.Online,
                    endpoint = seen?.Endpoint,
                    path = seen?.Endpoint is { } e && IPEndPoint.TryParse(e, out var at) && (_relay?.IsRelayed(at) ?? false) ? "relayed" : "direct",
                    lastHandshake = seen?.LastHandshake,
                    rxBytes = seen?.RxBytes ?? 0,
                    txBytes = seen?.TxBytes ?? 0,
                };
            }).ToArray(),
        };
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        await _applying;
        if (_relay is not null)
        {
            await _relay.DisposeAsync();
        }
        if (_wireGuard is not null)
        {
            await _wireGuard.DisposeAsync();
        }

        // The link goes with wireguard-go; what the system kept anyway goes here.
        try
        {
            await CleanupAsync(_device, CancellationToken.None);
        }
        catch (DataplaneException exception)
        {
            _output.Error("dataplane_cleanup", exception.Message);
        }
    }

    private async Task ApplyLoopAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                await WaitForWorkAsync(cancellationToken);
                Pending? pending;
                lock (_pendingLock)
                {
                    (pending, _pending) = (_pending, null);
                }

                var clock = Stopwatch.StartNew();
                if (_wireGuard!.HasExited)
                {
                    _failed.TrySetResult(new DataplaneException($"wireguard-go for {_device} ended ({_wireGuard.Exit}): {_wireGuard.Log.Trim()}"));
                    return;
                }

                try
                {
                    if (pending is not null)
                    {
                        await ApplyAsync(pending, cancellationToken);
                        LastApplied = (DateTimeOffset.UtcNow, clock.Elapsed, _peers.Count);
                    }

                    if (_handshakes.TakeDue(DateTimeOffset.UtcNow) is { Count: > 0 } due)
                    {
                        await RestartStalledHandshakesAsync(due, cancellationToken);
                    }

                    if (_relay is not null && _relayChecks.TakeDue(DateTimeOffset.UtcNow) is { Count: > 0 } relayDue)
                    {
                        await RelayStalledPeersAsync(relayDue, cancellationToken);
                    }

                    if (_relay is not null)
                    {
                        await FollowPathsAsync(cancellationToken);
                    }
                }
                catch (Exception exception) when (exception is DataplaneException or IOException or System.Net.Sockets.SocketException)
                {
                    // Reported; the next netmap resyncs everything.
                    _output.Error("dataplane_error", exception.Message);
                    lock (_pendingLock)
                    {
                        _resyncNext = true;
                    }

                    if (_wireGuard.HasExited)
                    {
                        _failed.TrySetResult(exception);
                        return;
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Moves the due peers that still have no session to the relay: their endpoint becomes this node's loopback
    /// socket for them (see <see cref="RelayLink"/>); the peer's device roams to the relay as the first packet arrives.</summary>
    private async Task RelayStalledPeersAsync(IReadOnlyList<string> due, CancellationToken cancellationToken)
    {
        var relayed = await RemakeStalledPeersAsync(due, (key, peer) =>
        {
            if (!_relayed.Add(key))
            {
                return null;
            }

            _heardAt.Remove(key);
            _relay!.SetDirect(peer.NodeId, _netmapEndpoints.GetValueOrDefault(key));
            return peer with { Endpoint = _relay.EndpointFor(peer.NodeId), Keepalive = RelayedKeepaliveSeconds };
        }, cancellationToken);
        if (relayed.Count > 0)
        {
            _output.Event("peers_relayed", new { peers = relayed }, $"no direct path to {string.Join(", ", relayed)}: relayed through the gateway");
        }
    }

    /// <summary>
    /// Keeps each online peer on a path that works, as the device shows it. Direct packets heard from a relayed peer
    /// move it to the direct path; a direct path that stops answering (<see cref="PathMonitor"/>) moves the peer to
    /// the relay, keeping its session (only the endpoint changes; the peer's device roams after it), and direct tries
    /// begin. Where the device roamed by itself — the peer moved first — the peer's state follows it.
    /// </summary>
    private async Task FollowPathsAsync(CancellationToken cancellationToken)
    {
        var lines = new List<string>();
        var toDirect = new List<string>();
        var toRelay = new List<string>();
        while (_heardDirectly.TryDequeue(out var heard))
        {
            if (_keyOfNode.TryGetValue(heard.NodeId, out var key) && _peers[key] is { Keepalive: > 0 } peer
                && (_relayed.Contains(key) || _relay!.IsRelayed(peer.Endpoint)))
            {
                lines.Add($"public_key={key}");
                lines.Add($"endpoint={heard.From}");
                KeepaliveNow(lines, ConfigCompiler.KeepaliveSeconds);
                _peers[key] = peer with { Endpoint = heard.From, Keepalive = ConfigCompiler.KeepaliveSeconds };
                _relayed.Remove(key);
                if (Equals(heard.From, _netmapEndpoints.GetValueOrDefault(key)))
                {
                    _heardAt.Remove(key);
                }
                else
                {
                    _heardAt[key] = heard.From;
                }

                _relay!.StopProbing(heard.NodeId);
                _paths.Forget(key);
                toDirect.Add(peer.Name);
            }
        }

        var now = DateTimeOffset.UtcNow;
        // Only online peers (with keepalives) have a path to follow: a tailnet of idle peers costs no reading.
        var online = now >= _nextPathCheck ? _peers.Values.Count(p => p.Keepalive > 0) : 0;
        if (now >= _nextPathCheck)
        {
            _nextPathCheck = now + PathCheckInterval(online);
        }

        if (online > 0)
        {
            foreach (var stats in await _wireGuard!.GetAsync(cancellationToken))
            {
                var key = stats.PublicKeyHex;
                if (!_peers.TryGetValue(key, out var peer) || peer.Keepalive == 0 || _relayChecks.IsWatched(key))
                {
                    continue; // offline, or its first handshake is still being watched
                }

                var at = IPEndPoint.TryParse(stats.Endpoint ?? "", out var parsed) ? parsed : null;
                if (_relay!.IsRelayed(at))
                {
                    if (_relayed.Add(key))
                    {
                        // The peer relays to this node: the device roamed to its relay socket. Try it directly too.
                        lines.Add($"public_key={key}");
                        lines.Add($"persistent_keepalive_interval={RelayedKeepaliveSeconds}");
                        _peers[key] = peer with { Endpoint = at, Keepalive = RelayedKeepaliveSeconds };
                        _heardAt.Remove(key);
                        _relay.SetDirect(peer.NodeId, _netmapEndpoints.GetValueOrDefault(key));
                        toRelay.Add(peer.Name);
                    }

                    continue;
                }

                if (_relayed.Remove(key))
                {
                    // The peer reached this node directly and the device roamed to it. A keepalive at once answers there:
                    // the peer hears this side directly even when neither has anything to send.
                    lines.Add($"public_key={key}");
                    KeepaliveNow(lines, ConfigCompiler.KeepaliveSeconds);
                    _peers[key] = peer with { Endpoint = _heardAt.GetValueOrDefault(key) ?? _netmapEndpoints.GetValueOrDefault(key), Keepalive = ConfigCompiler.KeepaliveSeconds };
                    _relay.StopProbing(peer.NodeId);
                    _paths.Forget(key);
                    toDirect.Add(peer.Name);
                    continue;
                }

                if (_paths.Broken(key, stats.RxBytes, stats.TxBytes, now))
                {
                    var relayed = _relay.EndpointFor(peer.NodeId);
                    lines.Add($"public_key={key}");
                    lines.Add($"endpoint={relayed}");
                    KeepaliveNow(lines, RelayedKeepaliveSeconds);
                    _peers[key] = peer with { Endpoint = relayed, Keepalive = RelayedKeepaliveSeconds };
                    _relayed.Add(key);
                    _heardAt.Remove(key);
                    _relay.SetDirect(peer.NodeId, _netmapEndpoints.GetValueOrDefault(key) ?? at);
                    _paths.Forget(key);
                    toRelay.Add(peer.Name);
                }
            }
        }

        if (lines.Count > 0)
        {
            await _wireGuard!.SetAsync(lines, cancellationToken);
        }

        if (toDirect.Count > 0)
        {
            _output.Event("path_direct", new { peers = toDirect }, $"direct path to {string.Join(", ", toDirect)}: no longer relayed");
        }

        if (toRelay.Count > 0)
        {
            _output.Event("path_relayed", new { peers = toRelay }, $"no direct path to {string.Join(", ", toRelay)}: relayed through the gateway");
        }
    }

    /// <summary>Sets the peer's keepalive interval so that the device sends a keepalive at once (WireGuard does when the
    /// interval turns on): the path just changed, and the other side learns the new one from it — an idle pair too,
    /// whose keepalives the other side's would otherwise keep putting off.</summary>
    private static void KeepaliveNow(List<string> lines, int seconds)
    {
        lines.Add("persistent_keepalive_interval=0");
        lines.Add($"persistent_keepalive_interval={seconds}");
    }

    /// <summary>Until a netmap is offered, a direct packet is heard, or a handshake, relay or path check is due.</summary>
    private async Task WaitForWorkAsync(CancellationToken cancellationToken)
    {
        // Relay and path checks wait until the relay is up (the node has a token).
        DateTimeOffset? due = _handshakes.NextDue;
        if (_relay is not null)
        {
            foreach (var next in new[] { _relayChecks.NextDue, _peers.Count > 0 ? _nextPathCheck : null })
            {
                if (next is { } n && (due is not { } d || n < d))
                {
                    due = n;
                }
            }
        }

        if (due is null)
        {
            await _wake.Reader.ReadAsync(cancellationToken);
            return;
        }

        var wait = due.Value - DateTimeOffset.UtcNow;
        if (wait <= TimeSpan.Zero)
        {
            _wake.Reader.TryRead(out _);
            return;
        }

        using var timer = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timer.CancelAfter(wait);
        try
        {
            await _wake.Reader.ReadAsync(timer.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // The check is due.
        }
    }

    /// <summary>Makes afresh, in one transaction, the due peers that still have no session: each starts a new
    /// initiation at once (see <see cref="HandshakeWatch"/>).</summary>
    private async Task RestartStalledHandshakesAsync(IReadOnlyList<string> due, CancellationToken cancellationToken)
    {
        var restarted = await RemakeStalledPeersAsync(due, (_, peer) => peer, cancellationToken);
        if (restarted.Count > 0)
        {
            _output.Event("handshake_restart", new { peers = restarted }, $"WireGuard: no handshake yet with {string.Join(", ", restarted)}; started afresh");
        }
    }

    /// <summary>Removes and adds again, in one UAPI transaction, each due peer that is online and still has no session,
    /// as <paramref name="remake"/> says (null: leave it): a new peer on the device starts a handshake at once, where
    /// the old one would wait for WireGuard's 5 s retry. Returns their names.</summary>
    private async Task<List<string>> RemakeStalledPeersAsync(IReadOnlyList<string> due, Func<string, PeerConfig, PeerConfig?> remake, CancellationToken cancellationToken)
    {
        var stats = (await _wireGuard!.GetAsync(cancellationToken)).ToDictionary(p => p.PublicKeyHex, StringComparer.Ordinal);
        var now = DateTimeOffset.UtcNow;
        var lines = new List<string>();
        var names = new List<string>();
        foreach (var key in due)
        {
            if (_peers.TryGetValue(key, out var peer) && peer.Keepalive > 0 && HandshakeWatch.Stalled(stats.GetValueOrDefault(key), now)
                && remake(key, peer) is { } remade)
            {
                _peers[key] = remade;
                lines.Add($"public_key={key}");
                lines.Add("remove=true");
                AddPeerLines(lines, remade, applied: null);
                names.Add(remade.Name);
            }
        }

        if (lines.Count > 0)
        {
            await _wireGuard.SetAsync(lines, cancellationToken);
        }

        return names;
    }

    /// <summary>The UAPI lines that turn <paramref name="applied"/> (null: absent) into <paramref name="desired"/>.</summary>
    private static void AddPeerLines(List<string> lines, PeerConfig desired, PeerConfig? applied)
    {
        lines.Add($"public_key={desired.PublicKeyHex}");
        if (desired.Endpoint is { } endpoint && !Equals(endpoint, applied?.Endpoint))
        {
            lines.Add($"endpoint={endpoint}"); // 1.2.3.4:5 or [2001:db8::1]:5, as UAPI wants
        }

        lines.Add("replace_allowed_ips=true");
        lines.AddRange(desired.AllowedIps.Select(ip => $"allowed_ip={ip}"));
        if (desired.Keepalive != (applied?.Keepalive ?? 0))
        {
            lines.Add($"persistent_keepalive_interval={desired.Keepalive}");
        }
    }

    /// <summary>A full map (or a resync after a failure) compares everything; a delta touches only the peers it names,
    /// so its cost does not grow with the tailnet. The filter goes first: a peer added below is judged by the rules
    /// that came with it.</summary>
    private async Task ApplyAsync(Pending pending, CancellationToken cancellationToken)
    {
        var netmap = pending.Netmap;
        var subnets = new Lazy<IReadOnlyCollection<IPNetwork>>(LocalEndpoints.Subnets);
        var touched = pending.All ? _peers.Values.Select(p => p.NodeId).Concat(netmap.Peers.Keys).ToHashSet(StringComparer.Ordinal) : pending.Peers;
        if (pending.All || pending.Filter || (touched.Count > 0 && FilterCompiler.DependsOnPeers(netmap.PacketFilter)))
        {
            await _filter.SetAsync(FilterCompiler.Compile(_device, netmap.PacketFilter, netmap.Peers.Values), cancellationToken);
        }

        var lines = new List<string>();
        var (added, removed) = (0, 0);
        var changes = new List<(string NodeId, PeerConfig? Peer)>();
        foreach (var nodeId in touched)
        {
            var desired = netmap.Peers.TryGetValue(nodeId, out var node) ? ConfigCompiler.Peer(node, subnets.Value) : null;
            if (desired is not null)
            {
                _netmapEndpoints[desired.PublicKeyHex] = desired.Endpoint;
                if (_relayed.Contains(desired.PublicKeyHex))
                {
                    // A relayed peer stays relayed until a direct path is heard (see FollowPathsAsync).
                    desired = desired with { Endpoint = _relay!.EndpointFor(desired.NodeId), Keepalive = desired.Keepalive > 0 ? RelayedKeepaliveSeconds : 0 };
                }
                else if (_heardAt.TryGetValue(desired.PublicKeyHex, out var heardAt))
                {
                    desired = desired with { Endpoint = heardAt };
                }
            }

            var applied = _keyOfNode.TryGetValue(nodeId, out var key) ? _peers[key] : null;
            if (applied is not null && (desired is null || desired.PublicKeyHex != applied.PublicKeyHex))
            {
                lines.Add($"public_key={applied.PublicKeyHex}");
                lines.Add("remove=true");
                removed++;
                applied = null;
            }

            if (desired is null || desired.Equals(applied))
            {
                changes.Add((nodeId, desired));
                continue;
            }

            AddPeerLines(lines, desired, applied);
            added += applied is null ? 1 : 0;
            changes.Add((nodeId, desired));
        }

        if (lines.Count > 0)
        {
            await _wireGuard!.SetAsync(lines, cancellationToken);
        }

        var now = DateTimeOffset.UtcNow;
        foreach (var (nodeId, peer) in changes)
        {
            PeerConfig? before = null;
            if (_keyOfNode.Remove(nodeId, out var oldKey) && _peers.Remove(oldKey, out before))
            {
                if (peer is null || peer.PublicKeyHex != oldKey || peer.Keepalive == 0)
                {
                    _handshakes.Forget(oldKey);
                    _relayChecks.Forget(oldKey);
                }

                if (peer is null || peer.PublicKeyHex != oldKey)
                {
                    _relayed.Remove(oldKey);
                    _heardAt.Remove(oldKey);
                    _paths.Forget(oldKey);
                    _netmapEndpoints.Remove(oldKey);
                }

                if (peer is null)
                {
                    _relay?.Remove(nodeId);
                }
            }

            if (peer is not null)
            {
                _peers[peer.PublicKeyHex] = peer;
                _keyOfNode[nodeId] = peer.PublicKeyHex;
                // Keepalives just turned on: WireGuard starts a handshake now; see that it completes.
                if (peer.Keepalive > 0 && (before is null || before.PublicKeyHex != peer.PublicKeyHex || before.Keepalive == 0))
                {
                    _handshakes.Watch(peer.PublicKeyHex, now);
                    // One side moves first (as with crossed handshakes); the other follows by roaming, or moves itself later.
                    _relayChecks.Watch(peer.PublicKeyHex, now);
                }
            }
        }

        // Addresses and routes after the peers: a route never points at a device that cannot deliver yet.
        if (pending.All || pending.Self)
        {
            var first = LastApplied is null;
            var addresses = ConfigCompiler.Addresses(netmap.Self);
            await _router.SetAsync(addresses, ConfigCompiler.TailnetRoutes, cancellationToken);
            if (first)
            {
                _output.Event("interface_ready", new { device = _device, addresses = addresses.Select(a => a.ToString()).ToArray() },
                    $"interface {_device}: {string.Join(", ", addresses)}");
            }
        }

        if (added + removed > 0)
        {
            _output.Event("peers", new { peers = _peers.Count, added, removed }, $"WireGuard peers: {_peers.Count} (+{added} -{removed})");
        }
    }

    /// <summary>What changed since the last applied netmap, gathered until the apply loop takes it.</summary>
    private sealed class Pending(NetmapSnapshot netmap)
    {
        public NetmapSnapshot Netmap { get; set; } = netmap;

        /// <summary>A full map: compare everything.</summary>
        public bool All { get; set; }

        public HashSet<string> Peers { get; } = new(StringComparer.Ordinal);

        public bool Filter { get; set; }

        public bool Self { get; set; }
    }

    /// <summary>wireguard-go processes serving <paramref name="device"/>, and their parents.</summary>
    private static IEnumerable<(int Pid, int Parent)> WireGuardProcesses(string device)
    {
        foreach (var directory in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(directory), out var pid) || pid == Environment.ProcessId)
            {
                continue;
            }

            string[] args;
            int parent;
            try
            {
                args = File.ReadAllText(Path.Combine(directory, "cmdline")).Split('\0', StringSplitOptions.RemoveEmptyEntries);
                var status = File.ReadAllLines(Path.Combine(directory, "status"));
                parent = int.Parse(status.First(l => l.StartsWith("PPid:", StringComparison.Ordinal))[5..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
            }
            catch (Exception exception) when (exception is IOException or UnauthorizedAccessException or InvalidOperationException or FormatException)
            {
                continue;
            }

            var wireguard = Array.FindIndex(args, a => Path.GetFileName(a) == "wireguard-go");
            if (wireguard >= 0 && args.Length > wireguard + 2 && args[wireguard + 1] == "-f" && args[wireguard + 2] == device)
            {
                yield return (pid, parent);
            }
        }
    }

    private static bool ProcessAlive(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}
