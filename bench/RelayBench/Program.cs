using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text.Json;
using EphemeralOrleans.Protocol;
using EphemeralOrleans.Testing;
using static EphemeralOrleans.Testing.LabMeasure;

// The relay, measured on the cluster topology as processes: PostgreSQL, one silo, two gateways in client mode on a
// network lab's bridge, agents in namespaces with no direct path to each other (an nft drop on arrival).
//   1. One TCP connection, same run: relayed through one gateway, relayed across the two gateways, and direct once the
//      path opens (the agents move to it by themselves) — throughput and round trips.
//   2. Gateway CPU per Gbit/s relayed (the gateway processes' CPU from /proc during the transfers; across gateways,
//      both gateways and the silo).
//   3. Relayed pairs one gateway carries at 1 Mbit/s each: relay clients of this process (WebSockets, 1,400-byte
//      packets, paced), for 10 s per step, doubling while at least 99 % is delivered. The load generator shares the
//      machine's cores with the gateway: the figure is a floor.
//
//   dotnet run -c Release --project bench/RelayBench -- [--megabytes 64] [--round-trips 2000] [--pairs 25,50,100,200,400,800]
var megabytes = Argument("--megabytes", 64);
var roundTrips = Argument("--round-trips", 2000);
var pairSteps = ArgumentList("--pairs", [25, 50, 100, 200, 400, 800]);
if ((NetworkLab.UnavailableReason() ?? PostgresServer.UnavailableReason()) is { } reason)
{
    Console.Error.WriteLine($"Cannot run: {reason}.");
    return 2;
}

const string AdminKey = "bench-admin-key-4Fq8Zr2Lw6Xt9Mv3";
await using var lab = await NetworkLab.CreateAsync();
await using var postgres = await PostgresServer.StartAsync();
var common = new Dictionary<string, string>
{
    ["Storage:Provider"] = "Postgres",
    ["ConnectionStrings:Postgres"] = await postgres.CreateDatabaseAsync("relaybench"),
    ["Cluster:Id"] = "relaybench-" + Guid.NewGuid().ToString("N"),
    ["Admin:ApiKey"] = AdminKey,
    ["RateLimits:Enabled"] = "false", // hundreds of agents' streams from one address
};
await using var silo = await HostProcess.StartSiloAsync(new Dictionary<string, string>(common)
{
    ["Silo:AdvertisedAddress"] = "127.0.0.1",
    ["Silo:Port"] = FreePort.Next().ToString(CultureInfo.InvariantCulture),
    ["Silo:GatewayPort"] = FreePort.Next().ToString(CultureInfo.InvariantCulture),
});
// (The silo logs at its default level: its readiness is read from "Application started".)
Dictionary<string, string> OnBridge() => new(common)
{
    ["Gateway:Mode"] = "Client",
    ["Kestrel:Endpoints:Http:Url"] = $"http://{lab.HostAddress}:{FreePort.Next()}",
    ["Logging:LogLevel:Default"] = "Warning",
};
await using var first = await HostProcess.StartGatewayAsync(OnBridge(), TimeSpan.FromSeconds(120));
await using var second = await HostProcess.StartGatewayAsync(OnBridge(), TimeSpan.FromSeconds(120));
using var admin = new HttpClient { BaseAddress = first.HttpUrl };
admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
var directory = Directory.CreateTempSubdirectory("eo-relay-bench-").FullName;
var running = new List<AgentProcess>();
Console.WriteLine($"{Environment.ProcessorCount} cores; lab 198.18.{lab.Subnet}.0/24; gateways {first.HttpUrl} and {second.HttpUrl}");
try
{
    var key = await admin.CreateKeyAsync(ephemeral: false);
    var hostA = lab.AddHost();
    var hostB = lab.AddHost();
    var hostC = lab.AddHost();
    foreach (var (ns, others) in new[] { (hostA.Namespace, new[] { hostB.Address, hostC.Address }), (hostB.Namespace, [hostA.Address]), (hostC.Namespace, [hostA.Address]) })
    {
        Nft(ns, "add table inet eo_bench_block");
        Nft(ns, "add chain inet eo_bench_block in { type filter hook input priority 0 ; }");
        foreach (var other in others)
        {
            Nft(ns, $"add rule inet eo_bench_block in ip saddr {other} drop");
        }
    }

    // A on the first gateway; B on the first too; C on the second.
    var a = await UpAsync("a", key, hostA.Namespace, first.HttpUrl);
    var b = await UpAsync("b", key, hostB.Namespace, first.HttpUrl);
    var c = await UpAsync("c", key, hostC.Namespace, second.HttpUrl);
    await ReachableAsync(hostA.Namespace, hostB.Namespace, b.Ipv4, TimeSpan.FromSeconds(30));
    await ReachableAsync(hostA.Namespace, hostC.Namespace, c.Ipv4, TimeSpan.FromSeconds(30));

    var results = new List<(string Path, double MiBs, double P50, double P99, double GatewayCpuPerGbit)>();
    async Task MeasureAsync(string path, string toNs, IPAddress to, int[] pids)
    {
        var before = pids.Select(Cpu).ToArray();
        var mibs = await ThroughputAsync(hostA.Namespace, toNs, to, megabytes);
        var cpu = pids.Select((pid, i) => Cpu(pid) - before[i]).Aggregate(TimeSpan.Zero, (x, y) => x + y);
        var gbits = megabytes * 1048576.0 * 8 / 1e9;
        var times = await RoundTripsAsync(hostA.Namespace, toNs, to, roundTrips);
        results.Add((path, mibs, Percentile(times, 0.5), Percentile(times, 0.99), cpu.TotalSeconds / gbits));
        Console.WriteLine($"{path}: {mibs:F1} MiB/s, round trip p50 {Percentile(times, 0.5):F3} ms p99 {Percentile(times, 0.99):F3} ms; gateway-side CPU {cpu.TotalSeconds:F2} s for {gbits:F2} Gbit");
    }

    await MeasureAsync("relayed, one gateway", hostB.Namespace, b.Ipv4, [first.Pid]);
    await MeasureAsync("relayed, across two gateways", hostC.Namespace, c.Ipv4, [first.Pid, second.Pid, silo.Pid]);

    // The path between A and B opens: they move to it by themselves.
    Nft(hostA.Namespace, "delete table inet eo_bench_block");
    Nft(hostB.Namespace, "delete table inet eo_bench_block");
    var opened = Stopwatch.StartNew();
    await a.Agent.WaitForEventAsync("path_direct", TimeSpan.FromSeconds(30));
    // (An idle pair: neither sends anything but keepalives.)
    Console.WriteLine($"A moved to the direct path {opened.ElapsedMilliseconds} ms after it opened");
    await Task.Delay(TimeSpan.FromSeconds(1));
    await MeasureAsync("direct", hostB.Namespace, b.Ipv4, [first.Pid]);

    var direct = results.Single(r => r.Path == "direct");
    Console.WriteLine();
    Console.WriteLine("| path | TCP MiB/s | of direct | round trip p50 / p99 ms | p50 against direct | gateway-side CPU s per Gbit |");
    Console.WriteLine("|---|---|---|---|---|---|");
    foreach (var r in results)
    {
        Console.WriteLine($"| {r.Path} | {r.MiBs:F1} | {r.MiBs / direct.MiBs:F2} | {r.P50:F3} / {r.P99:F3} | {r.P50 / direct.P50:F2}× | {(r.Path == "direct" ? "-" : r.GatewayCpuPerGbit.ToString("F1", CultureInfo.InvariantCulture))} |");
    }

    // 3. Relayed pairs at 1 Mbit/s each through the first gateway.
    Console.WriteLine();
    Console.WriteLine("| pairs | offered Mbit/s | sent Mbit/s | delivered | gateway CPU (cores) |");
    Console.WriteLine("|---|---|---|---|---|");
    var relayUrl = new Uri(first.HttpUrl.ToString().Replace("http://", "ws://", StringComparison.Ordinal).TrimEnd('/') + "/api/v1/machine/relay");
    var nodes = new List<(string Id, ClientWebSocket Socket)>();
    var receivedFrames = new long[1];
    var carried = 0;
    foreach (var pairs in pairSteps)
    {
        while (nodes.Count < pairs * 2)
        {
            var (id, token) = await admin.RegisterAsync(key, $"r{nodes.Count}");
            var socket = new ClientWebSocket();
            socket.Options.SetRequestHeader("Authorization", "Bearer " + token);
            await socket.ConnectAsync(relayUrl, CancellationToken.None);
            nodes.Add((id, socket));
            // Every node reads for as long as the bench runs (cancelling a WebSocket read would abort the socket).
            _ = Task.Run(async () =>
            {
                var buffer = new byte[4096];
                try
                {
                    while (true)
                    {
                        var result = await socket.ReceiveAsync(buffer, CancellationToken.None);
                        if (result.MessageType == WebSocketMessageType.Close)
                        {
                            return;
                        }

                        if (result.EndOfMessage)
                        {
                            Interlocked.Increment(ref receivedFrames[0]);
                        }
                    }
                }
                catch (Exception exception) when (exception is WebSocketException or ObjectDisposedException)
                {
                }
            });
        }

        var (sent, received, cores) = await PairsAsync(nodes.Take(pairs * 2).ToList(), receivedFrames, first.Pid, TimeSpan.FromSeconds(10));
        var delivered = sent == 0 ? 0 : (double)received / sent;
        // What the load process managed to send (it shares the cores): a pair counts as carried at 1 Mbit/s only if it was sent that.
        var sentMbits = sent * 1400 * 8 / 10.0 / 1e6;
        Console.WriteLine($"| {pairs} | {pairs} | {sentMbits:F0} | {delivered:P1} | {cores:F2} |");
        if (delivered < 0.99 || sentMbits < pairs * 0.95)
        {
            break;
        }

        carried = pairs;
    }

    Console.WriteLine($"relayed pairs at 1 Mbit/s carried by one gateway with at least 99 % delivered: {carried}{(carried == pairSteps[^1] ? " (the largest step tried)" : "")}");
    foreach (var (_, socket) in nodes)
    {
        socket.Abort();
        socket.Dispose();
    }
}
finally
{
    foreach (var agent in running.Where(a => !a.HasExited))
    {
        await agent.TerminateAsync();
        try
        {
            await agent.WaitForExitAsync(TimeSpan.FromSeconds(20));
        }
        catch (TimeoutException)
        {
            await agent.KillAsync();
        }

        await agent.DisposeAsync();
    }

    Directory.Delete(directory, recursive: true);
}

return 0;

// Each pair's first node sends its second 1 Mbit/s (89 packets of 1,400 bytes a second, paced every 20 ms); every
// node's reader counts into receivedFrames. Returns packets sent, packets received, and the gateway's CPU in cores.
static async Task<(long Sent, long Received, double Cores)> PairsAsync(List<(string Id, ClientWebSocket Socket)> nodes, long[] receivedFrames, int gatewayPid, TimeSpan duration)
{
    long sent = 0;
    var receivedBefore = Interlocked.Read(ref receivedFrames[0]);
    using var stop = new CancellationTokenSource();
    var senders = new List<Task>();
    for (var i = 0; i + 1 < nodes.Count; i += 2)
    {
        var (from, to) = (nodes[i], nodes[i + 1]);
        var frame = RelayFrame.Encode(to.Id, new byte[1400]);
        senders.Add(Task.Run(async () =>
        {
            const double PerSecond = 1_000_000 / 8.0 / 1400;
            var clock = Stopwatch.StartNew();
            using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(20));
            long mine = 0;
            try
            {
                while (await timer.WaitForNextTickAsync(stop.Token))
                {
                    while (mine < clock.Elapsed.TotalSeconds * PerSecond)
                    {
                        await from.Socket.SendAsync(frame, WebSocketMessageType.Binary, endOfMessage: true, CancellationToken.None);
                        mine++;
                        Interlocked.Increment(ref sent);
                    }
                }
            }
            catch (OperationCanceledException)
            {
            }
        }));
    }

    var cpu = Cpu(gatewayPid);
    var wall = Stopwatch.StartNew();
    await Task.Delay(duration);
    await stop.CancelAsync();
    await Task.WhenAll(senders);
    var sentTotal = Interlocked.Read(ref sent);
    // What is still on its way arrives within a second.
    await Task.Delay(TimeSpan.FromSeconds(1));
    var cores = (Cpu(gatewayPid) - cpu).TotalSeconds / wall.Elapsed.TotalSeconds;
    var receivedTotal = Interlocked.Read(ref receivedFrames[0]) - receivedBefore;
    return (sentTotal, receivedTotal, cores);
}

void Nft(string ns, string command)
{
    var (exitCode, output) = NetworkLab.RunIn(ns, ["nft", .. command.Split(' ')]);
    if (exitCode != 0)
    {
        throw new InvalidOperationException($"nft {command}: {output}");
    }
}

async Task<(AgentProcess Agent, IPAddress Ipv4)> UpAsync(string name, string authKey, string ns, Uri loginServer)
{
    var agent = AgentProcess.Start(["up", "--login-server", loginServer.ToString(), "--hostname", name, "--json", "--socket", Path.Combine(directory, name + ".sock"),
        "--tun", $"eor{lab.Subnet}{name}", "--listen-port", "41641"], new Dictionary<string, string> { ["EO_AUTH_KEY"] = authKey }, inNamespace: ns);
    running.Add(agent);
    var ready = await agent.WaitForEventAsync("interface_ready", TimeSpan.FromSeconds(60));
    return (agent, IPAddress.Parse(ready.GetProperty("addresses")[0].GetString()!.Split('/')[0]));
}

int Argument(string name, int fallback) =>
    Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;

int[] ArgumentList(string name, int[] fallback) =>
    Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1].Split(',').Select(v => int.Parse(v, CultureInfo.InvariantCulture)).ToArray() : fallback;
