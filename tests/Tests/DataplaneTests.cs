using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using EphemeralOrleans.Testing;
using EphemeralOrleans.Tests.Infrastructure;
using Xunit.Abstractions;

namespace EphemeralOrleans.Tests;

/// <summary>
/// Agents in network namespaces of a <see cref="NetworkLab"/>, each with a real WireGuard interface (wireguard-go),
/// reach each other through it as the netmap says: real processes, real packets. The gateway listens on the lab's
/// bridge; no namespace has a default route.
/// </summary>
[Collection(TimingCollection.Name)]
public sealed class DataplaneTests(ITestOutputHelper log) : NetworkLabTest
{
    private static readonly TimeSpan Within = TimeSpan.FromSeconds(20);
    private readonly List<LabAgent> _labAgents = [];

    [NetworkFact]
    public async Task Agents_reach_each_other_a_joiner_is_reachable_at_once_and_one_that_leaves_or_dies_is_gone_from_every_peer()
    {
        var key = (await Gateway.CreateKeyAsync()).Str("key");
        var a = await UpAsync("a", key);
        var b = await UpAsync("b", key);

        // A to B over IPv4 and IPv6, data both ways.
        await AssertTcpAsync(a, b.Ipv4);
        await AssertTcpAsync(a, b.Ipv6);
        await AssertTcpAsync(b, a.Ipv4);

        // status shows each peer as the device reports it: where it is, its last handshake, bytes each way.
        var (exitCode, output) = await AgentProcess.RunAsync(["status", "--json", "--socket", a.Socket], Within);
        Assert.True(exitCode == 0, output);
        var wireguard = JsonDocument.Parse(output).RootElement.GetProperty("wireguard");
        Assert.Equal(a.Tun, wireguard.Str("device"));
        var peerB = Assert.Single(wireguard.GetProperty("peers").EnumerateArray());
        Assert.Equal(b.Ipv4.ToString(), peerB.Str("ipv4"));
        Assert.Equal($"{b.Address}:41641", peerB.Str("endpoint"));
        Assert.True(peerB.GetProperty("lastHandshake").GetDateTimeOffset() > DateTimeOffset.UtcNow.AddMinutes(-1));
        Assert.True(peerB.GetProperty("rxBytes").GetInt64() > 0 && peerB.GetProperty("txBytes").GetInt64() > 0, peerB.ToString());
        (exitCode, output) = await AgentProcess.RunAsync(["status", "--socket", a.Socket], Within);
        Assert.True(exitCode == 0, output);
        Assert.Contains($"{b.Address}:41641", output);
        Assert.Matches(@"(?m)^b +100\.[\d.]+ +- +online +[\d.:]+ +\d+s ago ", output);

        // C joins: reachable from A within 2 s of its process starting.
        var started = Stopwatch.StartNew();
        var c = await UpAsync("c", key, waitForMap: false);
        await Poll.UntilAsync(() => CanConnectAsync(a, c.Ipv4, TimeSpan.FromMilliseconds(300)), Within, "A to reach C", everyMs: 20);
        log.WriteLine($"C reachable from A {started.ElapsedMilliseconds} ms after its up started");
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(2), $"C reachable {started.Elapsed} after its up started");

        // C logs out: within a second its peers have dropped it, and nothing passes to its old address.
        (exitCode, output) = await AgentProcess.RunAsync(["logout", "--socket", c.Socket], Within);
        Assert.True(exitCode == 0, output);
        var gone = Stopwatch.StartNew();
        await Poll.UntilAsync(async () => !(await NetworkLab.WireGuardPeersAsync(a.Tun)).Contains(c.PublicKeyHex)
            && !(await NetworkLab.WireGuardPeersAsync(b.Tun)).Contains(c.PublicKeyHex), Within, "C's removal from A and B", everyMs: 20);
        log.WriteLine($"C gone from A's and B's WireGuard {gone.ElapsedMilliseconds} ms after its logout");
        Assert.True(gone.Elapsed < TimeSpan.FromSeconds(1), $"C removed {gone.Elapsed} after logout");
        Assert.False(await CanConnectAsync(a, c.Ipv4, TimeSpan.FromSeconds(1)));
        Assert.False(await CanConnectAsync(b, c.Ipv6, TimeSpan.FromSeconds(1)));
        Assert.Equal(0, await c.Process.WaitForExitAsync(Within));
        Assert.False(InterfaceExists(c), "C's interface outlived its agent");

        // D is killed with -9: its device dies with it; after the inactivity timeout it leaves every peer's configuration.
        var d = await UpAsync("d", key);
        await Poll.UntilAsync(async () => (await NetworkLab.WireGuardPeersAsync(a.Tun)).Contains(d.PublicKeyHex), Within, "D at A");
        await d.Process.KillAsync();
        await Poll.UntilAsync(() => Task.FromResult(!InterfaceExists(d)), Within, "D's interface to go with its agent");
        await Poll.UntilAsync(async () => !(await NetworkLab.WireGuardPeersAsync(a.Tun)).Contains(d.PublicKeyHex)
            && !(await NetworkLab.WireGuardPeersAsync(b.Tun)).Contains(d.PublicKeyHex), Within, "D's removal after its inactivity timeout");

        // A new agent under D's name in D's namespace starts clean and is reachable.
        var d2 = await UpAsync("d", key, host: (d.Namespace, d.Address), tun: d.Tun);
        await Poll.UntilAsync(() => CanConnectAsync(a, d2.Ipv4, TimeSpan.FromMilliseconds(300)), Within, "A to reach the new D");

        // SIGTERM with memory state: logged out, removed, and the interface is gone.
        await a.Process.TerminateAsync();
        Assert.Equal(0, await a.Process.WaitForExitAsync(Within));
        Assert.False(InterfaceExists(a));
        await Poll.UntilAsync(async () => !(await NetworkLab.WireGuardPeersAsync(b.Tun)).Contains(a.PublicKeyHex), Within, "A's removal at B");
    }

    [NetworkFact]
    public async Task Agents_with_no_direct_path_reach_each_other_through_the_gateways_relay_byte_for_byte()
    {
        var key = (await Gateway.CreateKeyAsync()).Str("key");
        var (nsA, addressA) = Lab.AddHost();
        var (nsB, addressB) = Lab.AddHost();
        // Each reaches the gateway but not the other: what a NAT or a firewall does to two CI runners.
        BlockDirectPath((nsA, addressA), (nsB, addressB));

        var a = await UpAsync("a", key, host: (nsA, addressA));
        var b = await UpAsync("b", key, host: (nsB, addressB));
        var started = Stopwatch.StartNew();
        await Poll.UntilAsync(() => CanConnectAsync(a, b.Ipv4, TimeSpan.FromMilliseconds(500)), Within, "A to reach B through the relay", everyMs: 50,
            why: () => $"A: {a.Process.Output}\nB: {b.Process.Output}");
        log.WriteLine($"A reached B through the relay {started.ElapsedMilliseconds} ms after both were up");

        // A few MB each way, checksummed.
        var (client, server) = await ConnectAsync(a, b.Ipv4, 5432);
        using var _ = client;
        using var __ = server;
        foreach (var (from, to) in new[] { (client, server), (server, client) })
        {
            var data = System.Security.Cryptography.RandomNumberGenerator.GetBytes(2 * 1024 * 1024);
            var sending = Task.Run(async () =>
            {
                for (var offset = 0; offset < data.Length; offset += 65536)
                {
                    await from.SendAsync(data.AsMemory(offset, Math.Min(65536, data.Length - offset)));
                }
            });
            var received = new byte[data.Length];
            for (var offset = 0; offset < received.Length;)
            {
                var read = await to.ReceiveAsync(received.AsMemory(offset)).AsTask().WaitAsync(Within);
                Assert.True(read > 0, "the connection closed early");
                offset += read;
            }

            await sending.WaitAsync(Within);
            Assert.Equal(System.Security.Cryptography.SHA256.HashData(data), System.Security.Cryptography.SHA256.HashData(received));
        }

        // status says the peer is relayed, at both ends.
        foreach (var (agent, peer) in new[] { (a, b), (b, a) })
        {
            var (exitCode, output) = await AgentProcess.RunAsync(["status", "--json", "--socket", agent.Socket], Within);
            Assert.True(exitCode == 0, output);
            var seen = Assert.Single(JsonDocument.Parse(output).RootElement.GetProperty("wireguard").GetProperty("peers").EnumerateArray());
            Assert.Equal(peer.Ipv4.ToString(), seen.Str("ipv4"));
            Assert.Equal("relayed", seen.Str("path"));
        }
    }

    [NetworkFact]
    public async Task Agents_on_different_gateways_of_a_cluster_reach_each_other_through_the_relay()
    {
        await using var postgres = await PostgresServer.StartAsync();
        var common = new Dictionary<string, string>
        {
            ["Storage:Provider"] = "Postgres",
            ["ConnectionStrings:Postgres"] = await postgres.CreateDatabaseAsync("relay"),
            ["Cluster:Id"] = "relay-" + Guid.NewGuid().ToString("N"),
            ["Admin:ApiKey"] = GatewayClient.AdminKey,
        };
        await using var silo = await HostProcess.StartSiloAsync(new Dictionary<string, string>(common)
        {
            ["Silo:AdvertisedAddress"] = "127.0.0.1",
            ["Silo:Port"] = FreePort.Next().ToString(),
            ["Silo:GatewayPort"] = FreePort.Next().ToString(),
        });
        // Two gateways in client mode on the lab's bridge, one agent on each.
        Dictionary<string, string> OnBridge() => new(common) { ["Gateway:Mode"] = "Client", ["Kestrel:Endpoints:Http:Url"] = $"http://{Lab.HostAddress}:{FreePort.Next()}" };
        await using var firstGateway = await HostProcess.StartGatewayAsync(OnBridge());
        await using var secondGateway = await HostProcess.StartGatewayAsync(OnBridge());
        using var first = new GatewayClient(firstGateway.HttpUrl);
        using var second = new GatewayClient(secondGateway.HttpUrl);
        var key = (await first.CreateKeyAsync()).Str("key");
        var hostA = Lab.AddHost();
        var hostB = Lab.AddHost();
        BlockDirectPath(hostA, hostB);
        var a = await UpAsync("a", key, host: hostA, gateway: first);
        var b = await UpAsync("b", key, host: hostB, gateway: second);
        var started = Stopwatch.StartNew();
        await Poll.UntilAsync(() => CanConnectAsync(a, b.Ipv4, TimeSpan.FromMilliseconds(500)), Within, "A to reach B through the two gateways' relay", everyMs: 50,
            why: () => $"A: {a.Process.Output}\nB: {b.Process.Output}");
        log.WriteLine($"A reached B across gateways {started.ElapsedMilliseconds} ms after both were up");
        await AssertTcpAsync(b, a.Ipv4);

        // A steady stream across the cluster, checksummed.
        var (client, server) = await ConnectAsync(a, b.Ipv4, 5432);
        using var _c = client;
        using var _s = server;
        using var stream = new SteadyStream(client, server);
        await stream.WaitForBytesAsync(1024 * 1024, Within);
        await stream.StopAndVerifyAsync(Within);
        Assert.Equal("relayed", await PathAsync(a));
        Assert.Equal("relayed", await PathAsync(b));
    }

    [NetworkFact]
    public async Task A_flood_through_the_relay_does_not_stall_another_relayed_pair_and_a_killed_agents_connection_goes()
    {
        var key = (await Gateway.CreateKeyAsync()).Str("key");
        var hostC = Lab.AddHost();
        var hostD = Lab.AddHost();
        BlockDirectPath(hostC, hostD);
        var c = await UpAsync("c", key, host: hostC);
        var d = await UpAsync("d", key, host: hostD);
        await Poll.UntilAsync(() => CanConnectAsync(c, d.Ipv4, TimeSpan.FromMilliseconds(500)), Within, "C to reach D through the relay", everyMs: 50);
        var quiet = await LabMeasure.ThroughputAsync(c.Namespace, d.Namespace, d.Ipv4, mebibytes: 8);

        // E floods F as fast as one relay connection takes frames; F never reads (its queue fills, its socket backs up).
        var (_, tokenE) = await Gateway.RegisterAsync(key, hostname: "e");
        var (f, tokenF) = await Gateway.RegisterAsync(key, hostname: "f");
        using var e = await RelaySocketAsync(tokenE);
        using var fSocket = await RelaySocketAsync(tokenF);
        var relay = Gateway.Service<EphemeralOrleans.Gateway.Relay.RelayHub>();
        Assert.Equal(4, relay.ConnectionCount);
        using var stopFlood = new CancellationTokenSource();
        var flooded = 0L;
        var frame = EphemeralOrleans.Protocol.RelayFrame.Encode(f.Str("id"), new byte[1400]);
        var flooding = Task.Run(async () =>
        {
            while (!stopFlood.IsCancellationRequested)
            {
                await e.SendAsync(frame, WebSocketMessageType.Binary, endOfMessage: true, CancellationToken.None);
                Interlocked.Increment(ref flooded);
            }
        });
        await Task.Delay(TimeSpan.FromMilliseconds(500));
        var floodClock = Stopwatch.StartNew();
        var floodedBefore = Interlocked.Read(ref flooded);
        var loaded = await LabMeasure.ThroughputAsync(c.Namespace, d.Namespace, d.Ipv4, mebibytes: 8);
        var floodRate = (Interlocked.Read(ref flooded) - floodedBefore) / floodClock.Elapsed.TotalSeconds;
        await stopFlood.CancelAsync();
        await flooding.WaitAsync(Within);
        log.WriteLine($"C to D through the relay: {quiet:F1} MiB/s alone, {loaded:F1} MiB/s beside a flood of {floodRate:F0} frames/s ({loaded / quiet:F2})");
        Assert.True(floodRate > 5_000, $"the flood was only {floodRate:F0} frames/s");
        Assert.True(loaded >= quiet / 2, $"{loaded:F1} MiB/s beside the flood against {quiet:F1} alone");

        // C killed with -9: its relay connection goes with it.
        await c.Process.KillAsync();
        await Poll.UntilAsync(() => Task.FromResult(relay.ConnectionCount == 3), Within, "C's relay connection to go");
    }

    [NetworkFact]
    public async Task A_relayed_pair_moves_to_a_direct_path_that_opens_and_back_to_the_relay_when_it_closes_without_losing_a_byte()
    {
        var key = (await Gateway.CreateKeyAsync()).Str("key");
        var hostA = Lab.AddHost();
        var hostB = Lab.AddHost();
        BlockDirectPath(hostA, hostB);
        var a = await UpAsync("a", key, host: hostA);
        var b = await UpAsync("b", key, host: hostB);
        await Poll.UntilAsync(() => CanConnectAsync(a, b.Ipv4, TimeSpan.FromMilliseconds(500)), Within, "A to reach B through the relay", everyMs: 50);
        Assert.Equal("relayed", await PathAsync(a));

        // A steady stream from A to B (about 1 MB/s) while the direct path opens and closes again.
        var (client, server) = await ConnectAsync(a, b.Ipv4, 5432);
        using var _ = client;
        using var __ = server;
        using var stream = new SteadyStream(client, server);
        await stream.WaitForBytesAsync(256 * 1024, Within);

        UnblockDirectPath(hostA, hostB);
        var opened = Stopwatch.StartNew();
        await Poll.UntilAsync(async () => await PathAsync(a) == "direct" && await PathAsync(b) == "direct", Within, "A and B to move to the direct path", everyMs: 50);
        log.WriteLine($"both direct {opened.ElapsedMilliseconds} ms after the path opened");
        Assert.True(opened.Elapsed < TimeSpan.FromSeconds(5), $"direct only {opened.Elapsed} after the path opened");
        var (aStatus, bStatus) = (await PeerStatusAsync(a), await PeerStatusAsync(b));
        Assert.Equal($"{b.Address}:41641", aStatus.Str("endpoint"));
        Assert.Equal($"{a.Address}:41641", bStatus.Str("endpoint"));
        var afterOpen = stream.Received;
        await stream.WaitForBytesAsync(afterOpen + 512 * 1024, Within);

        BlockDirectPath(hostA, hostB);
        var closed = Stopwatch.StartNew();
        await Poll.UntilAsync(async () => await PathAsync(a) == "relayed", Within, "A to fall back to the relay", everyMs: 50);
        var relayedAfter = closed.Elapsed;
        var afterClose = stream.Received;
        await stream.WaitForBytesAsync(afterClose + 512 * 1024, Within);
        log.WriteLine($"A relayed {relayedAfter.TotalMilliseconds:F0} ms after the path closed; the stream resumed {closed.ElapsedMilliseconds} ms after; longest pause {stream.LongestPause.TotalMilliseconds:F0} ms");
        // 0.75 s of silence with traffic in flight, read every 250 ms: about a second here; 3.2 s was seen under CI load.
        Assert.True(relayedAfter < TimeSpan.FromSeconds(6), $"relayed only {relayedAfter} after the path closed");
        // The connection resumes at TCP's next retransmission after the switch (1.4 s or 3 s after the loss began, by its
        // backoff): a pause of that order, never WireGuard's own 15 s.
        Assert.True(stream.LongestPause < TimeSpan.FromSeconds(6), $"the stream paused {stream.LongestPause}");
        Assert.Equal("relayed", await PathAsync(b));

        // Every byte arrived, in order.
        await stream.StopAndVerifyAsync(Within);
    }

    [NetworkFact]
    public async Task The_tunnel_lives_as_long_as_the_agent_not_as_long_as_the_thread_that_started_it()
    {
        // wireguard-go dies with the thread that started it (its parent-death signal); the runtime retires idle pool
        // threads — here after 200 ms instead of 20 s, so the test sees in seconds what users saw after a minute.
        var quickRetirement = new Dictionary<string, string> { ["DOTNET_ThreadPool_ThreadTimeoutMs"] = "200" };
        var key = (await Gateway.CreateKeyAsync()).Str("key");
        var a = await UpAsync("a", key, environment: quickRetirement);
        var b = await UpAsync("b", key);
        await AssertTcpAsync(b, a.Ipv4);

        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.False(a.Process.HasExited, a.Process.Output);
        Assert.True(InterfaceExists(a), "A's interface died while its agent ran");
        await AssertTcpAsync(b, a.Ipv4, port: 5434);
    }

    [NetworkFact]
    public async Task The_policy_decides_what_passes_and_withdrawing_a_permission_cuts_an_open_connection_within_a_second()
    {
        const string Allowed = """{"acls":[{"action":"accept","src":["tag:ci"],"dst":["tag:db:5432"]}]}""";
        Assert.Equal(HttpStatusCode.OK, (await Gateway.SetPolicyAsync(Allowed)).Status);
        var ci = await UpAsync("ci", (await Gateway.CreateKeyAsync(tags: ["tag:ci"])).Str("key"));
        var db = await UpAsync("db", (await Gateway.CreateKeyAsync(tags: ["tag:db"])).Str("key"));
        var other = await UpAsync("other", (await Gateway.CreateKeyAsync()).Str("key"));

        // ci reaches db on 5432, over IPv4 and IPv6, data both ways; nothing else passes.
        await AssertTcpAsync(ci, db.Ipv4, 5432);
        await AssertTcpAsync(ci, db.Ipv6, 5432);
        var no = TimeSpan.FromSeconds(1);
        Assert.False(await CanConnectAsync(ci, db.Ipv4, no, 22), "ci reached db on 22");
        Assert.False(await CanConnectAsync(ci, db.Ipv6, no, 22), "ci reached db on 22 over IPv6");
        Assert.False(await CanConnectAsync(db, ci.Ipv4, no, 5432), "db reached ci");
        Assert.False(await CanConnectAsync(other, db.Ipv4, no, 5432), "an untagged node reached db");
        Assert.False(await CanConnectAsync(other, ci.Ipv4, no, 5432), "an untagged node reached ci");
        // db has ci as a WireGuard peer (ci may reach it): it is the filter, not a missing peer, that drops db's packets.
        Assert.Contains(ci.PublicKeyHex, await NetworkLab.WireGuardPeersAsync(db.Tun));

        // An open connection, then the policy withdraws 5432 (ci and db still see each other: only the filter changes).
        var (client, server) = await ConnectAsync(ci, db.Ipv4, 5432);
        using (client)
        using (server)
        {
            await client.SendAsync("a"u8.ToArray());
            Assert.Equal("a", await ReceiveAsync(server));
            var changed = Stopwatch.StartNew();
            Assert.Equal(HttpStatusCode.OK, (await Gateway.SetPolicyAsync("""{"acls":[{"action":"accept","src":["tag:ci"],"dst":["tag:db:5433"]}]}""")).Status);
            var lastDelivered = TimeSpan.Zero;
            var receiving = Task.Run(async () =>
            {
                var buffer = new byte[64];
                while (await server.ReceiveAsync(buffer) > 0)
                {
                    lastDelivered = changed.Elapsed;
                }
            });
            while (changed.Elapsed < TimeSpan.FromSeconds(2.5))
            {
                await client.SendAsync("b"u8.ToArray());
                await Task.Delay(50);
            }

            log.WriteLine($"the open connection's last packet arrived {lastDelivered.TotalMilliseconds:0} ms after the policy change");
            Assert.True(lastDelivered < TimeSpan.FromSeconds(1), $"packets still arrived {lastDelivered} after the policy change");
            Assert.False(receiving.IsCompleted);
        }

        // Restored: new connections pass again.
        Assert.Equal(HttpStatusCode.OK, (await Gateway.SetPolicyAsync(Allowed)).Status);
        await Poll.UntilAsync(() => CanConnectAsync(ci, db.Ipv4, TimeSpan.FromMilliseconds(500), 5432), Within, "ci to reach db again");
    }

    [NetworkFact]
    public async Task Without_net_admin_or_wireguard_go_up_fails_at_once_with_one_line_and_makes_nothing()
    {
        var key = await Gateway.CreateKeyAsync(reusable: false);
        var (ns, _) = Lab.AddHost();
        var tun = $"eo{Lab.Subnet}x";

        // No CAP_NET_ADMIN: root, but with the capability dropped from the bounding set.
        var (exitCode, output) = await RunInAsync(ns, ["setpriv", "--bounding-set", "-net_admin", "dotnet", HostProcess.ProjectDll("Agent"),
            "up", "--login-server", LoginServer, "--tun", tun, "--socket", Path.Combine(Directory, "x.sock")], key.Str("key"));
        Assert.Equal(20, exitCode);
        var line = Assert.Single(output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        Assert.Contains("CAP_NET_ADMIN", line);
        Assert.Contains("--tun none", line);

        // No wireguard-go on PATH.
        (exitCode, output) = await RunInAsync(ns, ["env", "PATH=/usr/sbin:/sbin", Environment.ProcessPath!, HostProcess.ProjectDll("Agent"),
            "up", "--login-server", LoginServer, "--tun", tun, "--socket", Path.Combine(Directory, "x.sock")], key.Str("key"));
        Assert.Equal(20, exitCode);
        Assert.Contains("wireguard-go", output);
        Assert.Contains("--tun none", output);

        // Nothing was made: no interface, no node, the single-use key unused.
        Assert.NotEqual(0, NetworkLab.RunIn(ns, "ip", "link", "show", tun).ExitCode);
        Assert.Empty(await Gateway.ListNodesAsync());
        Assert.Equal(0, (await Gateway.GetKeyAsync(key.Str("id"))).Body.GetProperty("uses").GetInt32());
    }

    private async Task<LabAgent> UpAsync(string name, string key, bool waitForMap = true, (string Namespace, IPAddress Address)? host = null, string? tun = null,
        IReadOnlyDictionary<string, string>? environment = null, GatewayClient? gateway = null)
    {
        gateway ??= Gateway;
        var (ns, address) = host ?? Lab.AddHost();
        tun ??= $"eo{Lab.Subnet}{name}";
        var socket = Path.Combine(Directory, $"{name}-{Guid.NewGuid():N}.sock");
        var process = Track(AgentProcess.Start(["up", "--login-server", gateway.Http.BaseAddress!.ToString(), "--hostname", name, "--json",
            "--socket", socket, "--tun", tun, "--listen-port", "41641"], new Dictionary<string, string>(environment ?? new Dictionary<string, string>()) { ["EO_AUTH_KEY"] = key }, inNamespace: ns));
        var self = (await process.WaitForEventAsync("registered", Within)).GetProperty("node");
        if (waitForMap)
        {
            await process.WaitForEventAsync("interface_ready", Within);
        }

        var agent = new LabAgent(process, ns, address, tun, socket, IPAddress.Parse(self.Str("ipv4")), IPAddress.Parse(self.Str("ipv6")),
            (await gateway.GetNodeAsync(self.Str("id")))!.Value.Str("nodeKey")["nodekey:".Length..]);
        _labAgents.Add(agent);
        return agent;
    }

    /// <summary>A TCP connection from <paramref name="from"/> to a listener at <paramref name="to"/>:5432 in the namespace
    /// that has that address, carrying data both ways.</summary>
    private async Task AssertTcpAsync(LabAgent from, IPAddress to, int port = 5432)
    {
        var (client, server) = await ConnectAsync(from, to, port);
        using var _ = client;
        using var __ = server;
        await client.SendAsync("ping"u8.ToArray());
        await server.SendAsync("pong"u8.ToArray());
        Assert.Equal("ping", await ReceiveAsync(server));
        Assert.Equal("pong", await ReceiveAsync(client));
        // It came through the tunnel: from the sender's tailnet address.
        Assert.Equal(to.AddressFamily == AddressFamily.InterNetwork ? from.Ipv4 : from.Ipv6, ((IPEndPoint)server.RemoteEndPoint!).Address);
    }

    /// <summary>An open TCP connection from <paramref name="from"/> to <paramref name="to"/>:<paramref name="port"/>, both ends.</summary>
    private async Task<(Socket Client, Socket Server)> ConnectAsync(LabAgent from, IPAddress to, int port)
    {
        using var listener = NetworkLab.TcpSocketIn(Owner(to).Namespace, to.AddressFamily);
        listener.Bind(new IPEndPoint(to, port));
        listener.Listen();
        var accepted = listener.AcceptAsync();
        var client = NetworkLab.TcpSocketIn(from.Namespace, to.AddressFamily);
        using var timeout = new CancellationTokenSource(Within);
        await client.ConnectAsync(new IPEndPoint(to, port), timeout.Token);
        return (client, await accepted.WaitAsync(Within));
    }

    private async Task<bool> CanConnectAsync(LabAgent from, IPAddress to, TimeSpan within, int port = 5433)
    {
        var target = Owner(to);
        using var listener = NetworkLab.TcpSocketIn(target.Namespace, to.AddressFamily);
        listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        try
        {
            listener.Bind(new IPEndPoint(to, port));
        }
        catch (SocketException)
        {
            return false; // the address is gone from its namespace (its agent stopped)
        }

        listener.Listen();
        using var client = NetworkLab.TcpSocketIn(from.Namespace, to.AddressFamily);
        using var timeout = new CancellationTokenSource(within);
        try
        {
            await client.ConnectAsync(new IPEndPoint(to, port), timeout.Token);
            return true;
        }
        catch (Exception exception) when (exception is SocketException or OperationCanceledException)
        {
            return false;
        }
    }

    private async Task<ClientWebSocket> RelaySocketAsync(string token)
    {
        var socket = new ClientWebSocket();
        socket.Options.SetRequestHeader("Authorization", "Bearer " + token);
        await socket.ConnectAsync(new Uri(LoginServer.Replace("http://", "ws://", StringComparison.Ordinal).TrimEnd('/') + "/api/v1/machine/relay"), CancellationToken.None);
        return socket;
    }

    /// <summary>Drops what each host gets from the other (nothing else): the agents still reach the gateway.</summary>
    private static void BlockDirectPath((string Namespace, IPAddress Address) first, (string Namespace, IPAddress Address) second)
    {
        foreach (var (ns, other) in new[] { (first.Namespace, second.Address), (second.Namespace, first.Address) })
        {
            // Dropped on arrival, as a firewall on the way would: the sender's packets leave and vanish.
            foreach (var command in new[] { "add table inet eo_test_block", "add chain inet eo_test_block in { type filter hook input priority 0 ; }", $"add rule inet eo_test_block in ip saddr {other} drop" })
            {
                var (exitCode, output) = NetworkLab.RunIn(ns, ["nft", .. command.Split(' ')]);
                Assert.True(exitCode == 0, $"nft {command}: {output}");
            }
        }
    }

    private static void UnblockDirectPath((string Namespace, IPAddress Address) first, (string Namespace, IPAddress Address) second)
    {
        foreach (var ns in new[] { first.Namespace, second.Namespace })
        {
            var (exitCode, output) = NetworkLab.RunIn(ns, "nft", "delete", "table", "inet", "eo_test_block");
            Assert.True(exitCode == 0, $"nft delete table: {output}");
        }
    }

    /// <summary>The agent's one peer as <c>status --json</c> shows it.</summary>
    private async Task<JsonElement> PeerStatusAsync(LabAgent agent)
    {
        var (exitCode, output) = await AgentProcess.RunAsync(["status", "--json", "--socket", agent.Socket], Within);
        Assert.True(exitCode == 0, output);
        return Assert.Single(JsonDocument.Parse(output).RootElement.GetProperty("wireguard").GetProperty("peers").EnumerateArray()).Clone();
    }

    private async Task<string?> PathAsync(LabAgent agent) => (await PeerStatusAsync(agent)).Str("path");

    private LabAgent Owner(IPAddress address) => _labAgents.Last(a => a.Ipv4.Equals(address) || a.Ipv6.Equals(address));

    private bool InterfaceExists(LabAgent agent) => NetworkLab.RunIn(agent.Namespace, "ip", "link", "show", agent.Tun).ExitCode == 0;

    private static async Task<string> ReceiveAsync(Socket socket)
    {
        var buffer = new byte[16];
        var read = await socket.ReceiveAsync(buffer).WaitAsync(Within);
        return Encoding.ASCII.GetString(buffer, 0, read);
    }

    private async Task<(int ExitCode, string Output)> RunInAsync(string ns, string[] command, string authKey)
    {
        var start = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[] { "netns", "exec", ns }.Concat(command))
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["EO_AUTH_KEY"] = authKey;
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(Within);
        await process.WaitForExitAsync(timeout.Token);
        var output = await stdout + await stderr;
        log.WriteLine($"{string.Join(' ', command.Take(3))}…: exit {process.ExitCode}: {output}");
        return (process.ExitCode, output);
    }

    private sealed record LabAgent(AgentProcess Process, string Namespace, IPAddress Address, string Tun, string Socket, IPAddress Ipv4, IPAddress Ipv6, string PublicKeyHex);
}
