using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;
using EphemeralOrleans.Testing;
using static EphemeralOrleans.Testing.LabMeasure;

// The data plane, measured with real agents in network namespaces (root, wireguard-go, nft):
//   1. join-to-reachable: with --agents up, --joins agents join one after another; from a joiner's process start to
//      the first TCP exchange with an existing peer through the tunnel (p50, p99);
//   2. the tunnel against the bare veth it runs over, same namespaces, same run: TCP throughput and round trips;
//   3. peer churn at an agent with --peers idle peers: CPU of the agent (and its wireguard-go) per peer added and
//      removed; and a steady --rate deltas/s at the first size.
//
//   dotnet run -c Release --project bench/DataplaneBench -- [--agents 20] [--joins 50] [--megabytes 64] [--peers 500,1000,10000] [--churn 200] [--rate 100]
var agents = Argument("--agents", 20);
var joins = Argument("--joins", 50);
var megabytes = Argument("--megabytes", 64);
var peerCounts = ArgumentList("--peers", [500, 1000, 10000]);
var churn = Argument("--churn", 200);
var rate = Argument("--rate", 100);
if (NetworkLab.UnavailableReason() is { } reason)
{
    Console.Error.WriteLine($"Cannot run: {reason}.");
    return 2;
}

const string AdminKey = "bench-admin-key-4Fq8Zr2Lw6Xt9Mv3";
await using var lab = await NetworkLab.CreateAsync();
var (app, httpUrl) = await InProcessGateway.StartAsync(new Dictionary<string, string?>
{
    ["Admin:ApiKey"] = AdminKey,
    ["Kestrel:Endpoints:Http:Url"] = $"http://{lab.HostAddress}:{FreePort.Next()}",
    ["Kestrel:Endpoints:Grpc:Url"] = $"http://{lab.HostAddress}:{FreePort.Next()}",
    ["Logging:LogLevel:Default"] = "Warning",
});
using var admin = new HttpClient { BaseAddress = httpUrl };
admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
var directory = Directory.CreateTempSubdirectory("eo-dataplane-bench-").FullName;
var running = new List<AgentProcess>();
var stuckStops = 0;
Console.WriteLine($"{Environment.ProcessorCount} cores; lab 198.18.{lab.Subnet}.0/24");
try
{
    var key = await admin.CreateKeyAsync(ephemeral: true);

    // 1. Join-to-reachable.
    var existing = new List<(AgentProcess Agent, string Namespace, IPAddress Ipv4)>();
    for (var i = 0; i < agents; i++)
    {
        existing.Add(await UpAsync($"p{i}", key));
    }

    var target = existing[0];
    using var listener = NetworkLab.TcpSocketIn(target.Namespace, AddressFamily.InterNetwork);
    listener.Bind(new IPEndPoint(target.Ipv4, 7000));
    listener.Listen(512);
    _ = AcceptForeverAsync(listener);
    var joinTimes = new List<double>();
    for (var j = 0; j < joins; j++)
    {
        var (ns, _) = lab.AddHost();
        var clock = Stopwatch.StartNew();
        var joiner = Start($"j{j}", key, ns);
        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
        {
            while (true)
            {
                using var socket = NetworkLab.TcpSocketIn(ns, AddressFamily.InterNetwork);
                try
                {
                    using var attempt = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token);
                    attempt.CancelAfter(TimeSpan.FromMilliseconds(200));
                    await socket.ConnectAsync(new IPEndPoint(target.Ipv4, 7000), attempt.Token);
                    await socket.SendAsync(new byte[] { 1 });
                    var buffer = new byte[1];
                    if (await socket.ReceiveAsync(buffer, timeout.Token) == 1)
                    {
                        break;
                    }
                }
                catch (Exception exception) when (exception is SocketException || (exception is OperationCanceledException && !timeout.IsCancellationRequested))
                {
                    await Task.Delay(5);
                }
            }
        }

        joinTimes.Add(clock.Elapsed.TotalMilliseconds);
        await StopAsync(joiner);
    }

    joinTimes.Sort();
    // Crossed first handshakes that an agent broke by starting afresh (see HandshakeWatch); each would otherwise cost 5 s.
    var restarts = running.Sum(r => r.EventCount("handshake_restart"));
    Console.WriteLine($"join-to-reachable with {agents} agents up, {joins} joins: p50 {Percentile(joinTimes, 0.5):F0} ms, p99 {Percentile(joinTimes, 0.99):F0} ms, max {joinTimes[^1]:F0} ms; {restarts} handshake restarts");

    // 2. Tunnel against veth, between the first two agents' namespaces.
    Console.WriteLine("measuring throughput and round trips…");
    var (a, b) = (existing[0], existing[1]);
    var bVeth = IPAddress.Parse($"198.18.{lab.Subnet}.{int.Parse(b.Namespace.Split('-')[^1], CultureInfo.InvariantCulture)}");
    var vethThroughput = await ThroughputAsync(a.Namespace, b.Namespace, bVeth, megabytes);
    var tunnelThroughput = await ThroughputAsync(a.Namespace, b.Namespace, b.Ipv4, megabytes);
    var vethRtt = await RoundTripsAsync(a.Namespace, b.Namespace, bVeth, 2000);
    var tunnelRtt = await RoundTripsAsync(a.Namespace, b.Namespace, b.Ipv4, 2000);
    Console.WriteLine($"throughput ({megabytes} MiB): veth {vethThroughput:F0} MiB/s, tunnel {tunnelThroughput:F0} MiB/s, ratio {tunnelThroughput / vethThroughput:F2}");
    Console.WriteLine($"round trip (2000): veth p50 {Percentile(vethRtt, 0.5):F3} ms p99 {Percentile(vethRtt, 0.99):F3} ms; tunnel p50 {Percentile(tunnelRtt, 0.5):F3} ms p99 {Percentile(tunnelRtt, 0.99):F3} ms; p50 ratio {Percentile(tunnelRtt, 0.5) / Percentile(vethRtt, 0.5):F2}");
    foreach (var agent in existing)
    {
        await StopAsync(agent.Agent);
    }

    // 2b. The same through the gateway's relay: two agents in namespaces that reach the gateway but not each other.
    Console.WriteLine("measuring the relay…");
    var relayKey = await admin.CreateKeyAsync(ephemeral: true, "relay");
    var (r1Ns, r1Address) = lab.AddHost();
    var (r2Ns, r2Address) = lab.AddHost();
    foreach (var (ns, other) in new[] { (r1Ns, r2Address), (r2Ns, r1Address) })
    {
        foreach (var command in new[] { "add table inet eo_bench_block", "add chain inet eo_bench_block out { type filter hook output priority 0 ; }", $"add rule inet eo_bench_block out ip daddr {other} drop" })
        {
            NetworkLab.RunIn(ns, ["nft", .. command.Split(' ')]);
        }
    }

    var r1 = Start("r1", relayKey, r1Ns);
    var r2 = Start("r2", relayKey, r2Ns);
    var r2Ready = await r2.WaitForEventAsync("interface_ready", TimeSpan.FromSeconds(60));
    await r1.WaitForEventAsync("interface_ready", TimeSpan.FromSeconds(60));
    var r2Ipv4 = IPAddress.Parse(r2Ready.GetProperty("addresses")[0].GetString()!.Split('/')[0]);
    var relayClock = Stopwatch.StartNew();
    await ReachableAsync(r1Ns, r2Ns, r2Ipv4, TimeSpan.FromSeconds(30));

    Console.WriteLine($"relay: first connection {relayClock.ElapsedMilliseconds} ms after both interfaces were up");
    var relayThroughput = await ThroughputAsync(r1Ns, r2Ns, r2Ipv4, megabytes);
    var relayRtt = await RoundTripsAsync(r1Ns, r2Ns, r2Ipv4, 2000);
    Console.WriteLine($"relay throughput ({megabytes} MiB): {relayThroughput:F0} MiB/s, ratio to the direct tunnel {relayThroughput / tunnelThroughput:F2}");
    Console.WriteLine($"relay round trip (2000): p50 {Percentile(relayRtt, 0.5):F3} ms p99 {Percentile(relayRtt, 0.99):F3} ms; p50 ratio to the direct tunnel {Percentile(relayRtt, 0.5) / Percentile(tunnelRtt, 0.5):F2}");
    await StopAsync(r1);
    await StopAsync(r2);

    // 3. Peer churn at one agent, at each tailnet size.
    foreach (var peers in peerCounts.Where(p => p > 0))
    {
        var tailnet = $"churn{peers}";
        var idleKey = await admin.CreateKeyAsync(ephemeral: false, tailnet);
        await Parallel.ForEachAsync(Enumerable.Range(0, peers), new ParallelOptions { MaxDegreeOfParallelism = 32 }, async (i, _) =>
            await admin.RegisterAsync(idleKey, $"idle{i}"));
        var watcher = await UpAsync("w", await admin.CreateKeyAsync(ephemeral: true, tailnet));
        await WaitForPeersAsync(watcher.Agent, peers);
        var (_, status) = await AgentProcess.RunAsync(["status", "--json", "--socket", Path.Combine(directory, "w.sock")], TimeSpan.FromSeconds(60));
        var fullApply = JsonDocument.Parse(status).RootElement.GetProperty("wireguard").GetProperty("lastApply").GetProperty("milliseconds").GetDouble();
        Console.WriteLine($"{peers} peers: the full map applied in {fullApply:F0} ms");
        var wireguardGo = Process.GetProcessesByName("wireguard-go").Single(p => Parent(p.Id) == watcher.Agent.Pid);
        async Task ChurnAsync(int count, string prefix)
        {
            for (var i = 0; i < count; i++)
            {
                var (id, _) = await admin.RegisterAsync(idleKey, $"{prefix}{i}");
                await WaitForPeersAsync(watcher.Agent, peers + 1);
                using var deleted = await admin.DeleteAsync($"/api/v1/tailnets/{tailnet}/nodes/{id}");
                await WaitForPeersAsync(watcher.Agent, peers);
            }
        }

        await ChurnAsync(Math.Max(10, churn / 5), "warm"); // unmeasured: the agent's code paths compiled and tiered
        var before = (Cpu(watcher.Agent.Pid), Cpu(wireguardGo.Id));
        var clock = Stopwatch.StartNew();
        await ChurnAsync(churn, "churn");
        var elapsed = clock.Elapsed;
        var (agentCpu, wgCpu) = (Cpu(watcher.Agent.Pid) - before.Item1, Cpu(wireguardGo.Id) - before.Item2);
        Console.WriteLine($"{peers} peers: {churn} adds + removes in {elapsed.TotalSeconds:F1} s; agent CPU {agentCpu.TotalMilliseconds / churn:F2} ms, wireguard-go CPU {wgCpu.TotalMilliseconds / churn:F2} ms per add + remove");

        if (peers == peerCounts[0])
        {
            // A steady stream of deltas: half adds, half removes, --rate a second, for 10 s.
            var live = new Queue<string>();
            var start = (Cpu(watcher.Agent.Pid), Cpu(wireguardGo.Id));
            var steady = Stopwatch.StartNew();
            var sent = 0;
            while (steady.Elapsed < TimeSpan.FromSeconds(10))
            {
                if (sent % 2 == 0 || live.Count == 0)
                {
                    live.Enqueue((await admin.RegisterAsync(idleKey, $"steady{sent}")).Id);
                }
                else
                {
                    using var deleted = await admin.DeleteAsync($"/api/v1/tailnets/{tailnet}/nodes/{live.Dequeue()}");
                }

                sent++;
                var due = TimeSpan.FromSeconds((double)sent / rate) - steady.Elapsed;
                if (due > TimeSpan.Zero)
                {
                    await Task.Delay(due);
                }
            }

            var seconds = steady.Elapsed.TotalSeconds;
            Console.WriteLine($"{peers} peers, {sent / seconds:F0} changes/s for {seconds:F0} s: agent {(Cpu(watcher.Agent.Pid) - start.Item1).TotalSeconds / seconds:F3} cores, wireguard-go {(Cpu(wireguardGo.Id) - start.Item2).TotalSeconds / seconds:F3} cores");
        }

        await StopAsync(watcher.Agent);
    }
}
finally
{
    if (stuckStops > 0)
    {
        Console.WriteLine($"{stuckStops} agent(s) did not exit within 20 s of SIGTERM");
    }

    foreach (var agent in running.Where(a => !a.HasExited))
    {
        await agent.DisposeAsync();
    }

    await app.StopAsync();
    Directory.Delete(directory, recursive: true);
}

return 0;

AgentProcess Start(string name, string authKey, string ns)
{
    var agent = AgentProcess.Start(["up", "--login-server", httpUrl.ToString(), "--hostname", name, "--json", "--socket", Path.Combine(directory, name + ".sock"),
        "--tun", $"eob{lab.Subnet}{name}", "--listen-port", "41641"], new Dictionary<string, string> { ["EO_AUTH_KEY"] = authKey }, inNamespace: ns);
    running.Add(agent);
    return agent;
}

async Task<(AgentProcess Agent, string Namespace, IPAddress Ipv4)> UpAsync(string name, string authKey)
{
    var (ns, _) = lab.AddHost();
    var agent = Start(name, authKey, ns);
    var ready = await agent.WaitForEventAsync("interface_ready", TimeSpan.FromSeconds(60));
    var ipv4 = ready.GetProperty("addresses")[0].GetString()!.Split('/')[0];
    return (agent, ns, IPAddress.Parse(ipv4));
}

async Task StopAsync(AgentProcess agent)
{
    await agent.TerminateAsync();
    try
    {
        await agent.WaitForExitAsync(TimeSpan.FromSeconds(20));
    }
    catch (TimeoutException)
    {
        // Counted and reported, not fatal: the figures of the other agents stand.
        stuckStops++;
        Console.Error.WriteLine($"agent {agent.Pid} did not exit within 20 s of SIGTERM; killed");
        var stack = Path.Combine(Path.GetTempPath(), $"eo-agent-stuck-{agent.Pid}.txt");
        var tool = Path.Combine(Environment.GetEnvironmentVariable("HOME") ?? "/root", ".dotnet/tools/dotnet-stack");
        if (File.Exists(tool))
        {
            using var dump = Process.Start(new ProcessStartInfo(tool, ["report", "-p", agent.Pid.ToString(CultureInfo.InvariantCulture)]) { RedirectStandardOutput = true });
            var stacks = await dump!.StandardOutput.ReadToEndAsync();
            await dump.WaitForExitAsync();
            await File.WriteAllTextAsync(stack, stacks + "\n---\n" + agent.Output);
        }
        await agent.KillAsync();
    }
}

// The agent's own account (its "peers" events, after each change is applied): no probe costs it CPU.
async Task WaitForPeersAsync(AgentProcess agent, int count)
{
    var seen = agent.EventCount("peers");
    await agent.WaitForEventAsync("peers", e => e.GetProperty("peers").GetInt32() == count, TimeSpan.FromSeconds(120), skip: Math.Max(0, seen - 1));
}

static async Task AcceptForeverAsync(Socket listener)
{
    while (true)
    {
        var connection = await listener.AcceptAsync();
        _ = Task.Run(async () =>
        {
            using (connection)
            {
                var buffer = new byte[65536];
                int read;
                while ((read = await connection.ReceiveAsync(buffer)) > 0)
                {
                    await connection.SendAsync(buffer.AsMemory(0, Math.Min(read, 1)));
                }
            }
        });
    }
}

static int Parent(int pid) =>
    int.Parse(File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("PPid:", StringComparison.Ordinal))[5..].Trim(), CultureInfo.InvariantCulture);

int Argument(string name, int fallback) =>
    Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;

int[] ArgumentList(string name, int[] fallback) =>
    Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1].Split(',').Select(v => int.Parse(v, CultureInfo.InvariantCulture)).ToArray() : fallback;
