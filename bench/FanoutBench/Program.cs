// Netmap fan-out on this machine: N map streams held by one load process over loopback (HTTP/2, multiplexed), a
// gateway as its own process, churn of joins and leaves; latency from change to delivery on every affected stream,
// gateway CPU, and in the same run the raw limit: a bare gRPC broadcast to N streams at the same message rate.
// Also: a reconnect storm, and the cost of a change against the tailnet's size.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using EphemeralOrleans.FanoutBench;
using EphemeralOrleans.Protocol.V1;
using EphemeralOrleans.Testing;
using Grpc.Core;
using Grpc.Net.Client;

if (args.Length > 0 && args[0] == "raw-server")
{
    await RawServer.RunAsync(int.Parse(args[1]));
    return;
}

var streamCounts = Option("--streams", "1000,10000").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).Where(n => n > 0).ToArray();
var seconds = int.Parse(Option("--seconds", "20"));
var warmup = int.Parse(Option("--warmup", "10"));
var rate = int.Parse(Option("--rate", "50"));
// The gateway's Map:BatchWindow in ms; unset, the gateway's default (100 ms). With --window 0 and --rate 5 the gateway
// sends each change as its own delta, 10 a second: the raw broadcast's message rate, without the window's wait.
var window = Option("--window", "") is { Length: > 0 } windowMs ? TimeSpan.FromMilliseconds(int.Parse(windowMs)) : (TimeSpan?)null;
// Offline ephemeral nodes waiting for their removal (registered, never connected), and the gateway's CPU while they wait.
var offline = Option("--offline", "").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).Where(n => n > 0).ToArray();
// Idle streams held for keepalive: grain calls per second the gateway's session keepalive costs (0 skips it).
var keepalive = Option("--keepalive", "10000").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).Where(n => n > 0).ToArray();
var sizes = Option("--sizes", "1000,10000,50000").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).Where(n => n > 0).ToArray();
Console.WriteLine($"{Environment.ProcessorCount} cores; streams {string.Join("/", streamCounts)}; {rate} joins/s + {rate} leaves/s for {seconds} s; batch window {(window is { } w ? $"{w.TotalMilliseconds} ms" : "the gateway's default")}");
Bench.BatchWindow = window;

var fanout = new List<(int Streams, double RawP50, double RawP99, double GatewayP50, double GatewayP99)>();
Console.WriteLine("| streams | raw msg/s | raw p50 ms | raw p99 ms | raw p99 ms, change to delivery | raw server cores | gateway msg/s | gateway p50 ms | gateway p99 ms | gateway cores | load process cores (gateway run) | registration p99 ms | gateway p99 / raw change-to-delivery p99 | gateway p99 / raw p99 | reconnect storm s |");
Console.WriteLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
foreach (var n in streamCounts)
{
    var raw = await Bench.RawAsync(n, seconds, batchesPerSecond: 10, changesPerBatch: 2 * rate / 10, warmup);
    var (gateway, storm) = await Bench.GatewayAsync(n, seconds, rate, warmup);
    Console.WriteLine($"| {n} | {raw.Messages / (double)seconds:F0} | {raw.Latency.P(50):F0} | {raw.Latency.P(99):F0} | {raw.ChangeLatency!.P(99):F0} | {raw.ServerCores:F2} "
        + $"| {gateway.Messages / (double)seconds:F0} | {gateway.Latency.P(50):F0} | {gateway.Latency.P(99):F0} | {gateway.ServerCores:F2} | {gateway.LoadCores:F2} | {gateway.Registration!.P(99):F0} "
        + $"| {gateway.Latency.P(99) / Math.Max(1, raw.ChangeLatency.P(99)):F2} | {gateway.Latency.P(99) / Math.Max(1, raw.Latency.P(99)):F2} | {storm.TotalSeconds:F2} |");
    fanout.Add((n, raw.ChangeLatency.P(50), raw.ChangeLatency.P(99), gateway.Latency.P(50), gateway.Latency.P(99)));
}

if (fanout.Count > 0)
{
    Console.WriteLine("chart points (change to delivery, ms): " + string.Join("; ", fanout.Select(f =>
        $"{f.Streams} streams: gateway p50 {f.GatewayP50:F0} p99 {f.GatewayP99:F0}, raw p50 {f.RawP50:F0} p99 {f.RawP99:F0}")));
    Console.WriteLine(EphemeralOrleans.Bench.Charts.Lines(Path.Combine(EphemeralOrleans.Testing.HostProcess.RepositoryRoot(), "docs", "plots"), "fanout",
        $"Change to delivery against open streams ({rate} joins + {rate} leaves a second)", "map streams", "ms",
        fanout.Select(f => f.Streams.ToString("N0")).ToArray(),
        [("gateway p50", fanout.Select(f => f.GatewayP50).ToArray()), ("gateway p99", fanout.Select(f => f.GatewayP99).ToArray()),
            ("raw broadcast p50 (change to delivery)", fanout.Select(f => f.RawP50).ToArray()), ("raw broadcast p99 (change to delivery)", fanout.Select(f => f.RawP99).ToArray())]));
}

if (keepalive.Length > 0)
{
    Console.WriteLine("| idle streams | session lease | keepalive grain calls/s | per stream per lease | gateway cores |");
    Console.WriteLine("|---:|---:|---:|---:|---:|");
}

foreach (var n in keepalive)
{
    var result = await Bench.KeepaliveAsync(n, seconds);
    Console.WriteLine($"| {n} | {result.Lease.TotalSeconds:0.#} s | {result.CallsPerSecond:F1} | {result.CallsPerSecond * result.Lease.TotalSeconds / n:F4} | {result.Cores:F2} |");
}

Console.WriteLine("| tailnet size | changes | gateway CPU ms per change | idle CPU ms/s | p50 ms | p99 ms (10 affected streams) |");
foreach (var size in sizes)
{
    var result = await Bench.TailnetSizeAsync(size, seconds, rate);
    Console.WriteLine($"| {size} | {result.Changes} | {result.CpuMsPerChange:F2} | {result.IdleMsPerSecond:F0} | {result.Latency.P(50):F0} | {result.Latency.P(99):F0} |");
}

if (offline.Length > 0)
{
    Console.WriteLine("| offline ephemeral nodes | gateway CPU ms/s, empty (baseline) | gateway CPU ms/s, with the nodes | ratio |");
    Console.WriteLine("|---:|---:|---:|---:|");
}

foreach (var count in offline)
{
    var (empty, waiting) = await Bench.OfflineAsync(count, seconds);
    Console.WriteLine($"| {count} | {empty:F0} | {waiting:F0} | {waiting / Math.Max(1, empty):F2} |");
}

string Option(string name, string fallback)
{
    var index = Array.IndexOf(args, name);
    return index >= 0 && index + 1 < args.Length ? args[index + 1] : fallback;
}

namespace EphemeralOrleans.FanoutBench
{
    /// <summary>Latencies in milliseconds, 1 ms buckets up to a minute; safe for concurrent recording.</summary>
    public sealed class Histogram
    {
        private readonly long[] _buckets = new long[60_001];
        private long _count;

        public long Count => Interlocked.Read(ref _count);

        public void Record(double milliseconds)
        {
            Interlocked.Increment(ref _buckets[Math.Clamp((int)milliseconds, 0, _buckets.Length - 1)]);
            Interlocked.Increment(ref _count);
        }

        public double P(double percentile)
        {
            var target = (long)Math.Ceiling(Count * percentile / 100);
            long seen = 0;
            for (var i = 0; i < _buckets.Length; i++)
            {
                seen += _buckets[i];
                if (seen >= target && target > 0)
                {
                    return i;
                }
            }

            return double.NaN;
        }
    }

    /// <summary>A fan-out run. For the raw broadcast, <see cref="Latency"/> is from send to delivery and
    /// <see cref="ChangeLatency"/> from change to delivery; for the gateway, <see cref="Latency"/> is from change (the
    /// registration or logout request) to delivery, and <see cref="Registration"/> the registration calls' own latency.</summary>
    public sealed record Result(long Messages, Histogram Latency, double ServerCores, double LoadCores = 0,
        Histogram? ChangeLatency = null, Histogram? Registration = null);

    /// <summary>CPU per change is gross (the process's idle work included; <see cref="IdleMsPerSecond"/> says how much that is).</summary>
    public sealed record SizeResult(long Changes, double CpuMsPerChange, double IdleMsPerSecond, Histogram Latency);

    public static class Bench
    {
        private const string AdminKey = "bench-admin-key-4Fq8Zr2Lw6Xt9Mv3";

        /// <summary>The gateways' <c>Map:BatchWindow</c>; null leaves their default.</summary>
        public static TimeSpan? BatchWindow { get; set; }

        public static async Task<Result> RawAsync(int streams, int seconds, int batchesPerSecond, int changesPerBatch, int warmup)
        {
            var port = FreePort.Next();
            var self = Environment.ProcessPath!;
            // This program again, as the server: run by the apphost, or by dotnet with this assembly.
            var start = new ProcessStartInfo(self) { RedirectStandardOutput = true };
            if (self.EndsWith("dotnet", StringComparison.Ordinal))
            {
                start.ArgumentList.Add(typeof(Bench).Assembly.Location);
            }

            start.ArgumentList.Add("raw-server");
            start.ArgumentList.Add(port.ToString());
            using var server = Process.Start(start)!;
            try
            {
                var channel = Channel(new Uri($"http://127.0.0.1:{port}"));
                var client = new ControlService.ControlServiceClient(channel);
                await Until(async () => { try { await client.EndpointsAsync(new EndpointsRequest()); return true; } catch (RpcException) { return false; } }, "raw server up");

                var latency = new Histogram();
                var changeLatency = new Histogram();
                long messages = 0;
                var measuring = false;
                var held = new StreamSet(new Uri($"http://127.0.0.1:{port}"), new string?[streams], message =>
                {
                    if (Volatile.Read(ref measuring) && message.IsDelta)
                    {
                        Interlocked.Increment(ref messages);
                        var sent = message.Version / 1000.0;
                        var transport = NowMs() - sent;
                        latency.Record(transport);
                        // Change to delivery: the batch's changes came in evenly over the interval before it was sent
                        // (as in the gateway, which holds a change for up to Map:BatchWindow, 100 ms: the same interval).
                        for (var i = 0; i < message.Changes.Count; i++)
                        {
                            changeLatency.Record(transport + 1000.0 / batchesPerSecond * (i + 0.5) / message.Changes.Count);
                        }
                    }
                });
                await held.OpenAllAsync(untilFullMaps: false);
                await Task.Delay(2000);
                // Start broadcasting: the control call carries the rate.
                await client.LogoutAsync(new LogoutRequest(), new Metadata { { "rate", $"{batchesPerSecond},{changesPerBatch}" } });
                // The same unmeasured warm-up as the gateway's: a fresh server is still compiling its hot paths, and the
                // first garbage collections after 10,000 streams opened move their state to the old generation, with
                // pauses of 0.1-0.4 s that a long-running server has long had behind it.
                await Task.Delay(TimeSpan.FromSeconds(Math.Max(2, warmup)));
                var cpu = ProcessCpu.Of(server.Id);
                Volatile.Write(ref measuring, true);
                await Task.Delay(TimeSpan.FromSeconds(seconds));
                Volatile.Write(ref measuring, false);
                var cores = cpu.CoresSince();
                var result = new Result(Interlocked.Read(ref messages), latency, cores, ChangeLatency: changeLatency);
                await held.CloseAllAsync();
                return result;
            }
            finally
            {
                server.Kill(true);
                await server.WaitForExitAsync();
            }
        }

        public static async Task<(Result Fanout, TimeSpan Storm)> GatewayAsync(int streams, int seconds, int rate, int warmup)
        {
            await using var gateway = await HostProcess.StartGatewayAsync(GatewaySettings());
            using var http = Admin(gateway.HttpUrl);
            var client = new ControlService.ControlServiceClient(Channel(GrpcUrl(gateway)));
            // Every agent sees every CI job (so each change reaches all N streams), but agents do not see each other:
            // otherwise N full maps of N peers (N squared nodes) would be the whole story, not the fan-out of changes.
            await PutPolicyAsync(http, """{"tagOwners":{"tag:agent":[],"tag:ci":[]},"acls":[{"action":"accept","src":["tag:agent"],"dst":["tag:ci:*"]}]}""");
            var stayKey = await CreateKeyAsync(http, "bench", ephemeral: false, tags: ["tag:agent"]);
            var churnKey = await CreateKeyAsync(http, "bench", ephemeral: true, tags: ["tag:ci"]);

            var tokens = await RegisterManyAsync(client, stayKey, streams, "agent");
            var commits = new ConcurrentDictionary<long, double>();
            var latency = new Histogram();
            long messages = 0;
            var measuring = false;

            void OnMessage(MapFrame message)
            {
                if (!message.IsDelta || !Volatile.Read(ref measuring))
                {
                    return;
                }

                Interlocked.Increment(ref messages);
                var now = NowMs();
                foreach (var change in message.Changes)
                {
                    if (commits.TryGetValue(change, out var at))
                    {
                        latency.Record(now - at);
                    }
                }
            }

            var held = new StreamSet(GrpcUrl(gateway), tokens, OnMessage);
            await held.OpenAllAsync();

            // The same churn, not measured, first: a fresh gateway is still compiling the hot paths of joins, leaves and
            // deltas to their final tier (its JIT thread took 13-14 % of its CPU over a run), as no long-running one is.
            await ChurnAsync(client, churnKey, rate, warmup, new ConcurrentDictionary<long, double>(), "warm", new Histogram(), leaveNone: true);

            var cpu = ProcessCpu.Of(gateway.Pid);
            var loadCpu = ProcessCpu.Of(Environment.ProcessId);
            var registration = new Histogram();
            Volatile.Write(ref measuring, true);
            await ChurnAsync(client, churnKey, rate, seconds, commits, "job", registration);
            await Task.Delay(1000); // the last changes arrive
            Volatile.Write(ref measuring, false);
            var cores = cpu.CoresSince(exclude: TimeSpan.FromSeconds(1));
            var fanout = new Result(Interlocked.Read(ref messages), latency, cores, loadCpu.CoresSince(exclude: TimeSpan.FromSeconds(1)), Registration: registration);

            // Reconnect storm: every stream dropped at once and reopened at once.
            await held.CloseAllAsync();
            var storm = Stopwatch.StartNew();
            await held.OpenAllAsync();
            var stormTime = storm.Elapsed;
            await held.CloseAllAsync();
            return (fanout, stormTime);
        }

        /// <summary>Grain calls per second that keep <paramref name="streams"/> idle map streams' sessions alive, counted by
        /// the silo (<c>eo_session_keepalive_calls_total</c>) over <paramref name="seconds"/>, with a 15 s session lease
        /// (a five-minute inactivity timeout) so that a short window holds several renewals. (At a 3 s lease, per-stream
        /// heartbeats at 10,000 streams were 10,000 calls a second, and the full maps did not get out within two minutes.)</summary>
        public static async Task<(double CallsPerSecond, TimeSpan Lease, double Cores)> KeepaliveAsync(int streams, int seconds)
        {
            var settings = GatewaySettings();
            settings["Ephemeral:InactivityTimeout"] = "00:05:00";
            var lease = new EphemeralOrleans.Contracts.Options.EphemeralOptions { InactivityTimeout = TimeSpan.FromMinutes(5) }.SessionLease;
            await using var gateway = await HostProcess.StartGatewayAsync(settings);
            using var http = Admin(gateway.HttpUrl);
            var client = new ControlService.ControlServiceClient(Channel(GrpcUrl(gateway)));
            // As in the fan-out run: agents do not see each other (N full maps of N peers would be the whole story).
            await PutPolicyAsync(http, """{"tagOwners":{"tag:agent":[],"tag:ci":[]},"acls":[{"action":"accept","src":["tag:agent"],"dst":["tag:ci:*"]}]}""");
            var key = await CreateKeyAsync(http, "bench", ephemeral: false, tags: ["tag:agent"]);
            var held = new StreamSet(GrpcUrl(gateway), await RegisterManyAsync(client, key, streams, "idle"), _ => { });
            await held.OpenAllAsync();
            await Task.Delay(2 * lease); // past the opening: only keepalives from here
            var before = await KeepaliveCallsAsync(http);
            var cpu = ProcessCpu.Of(gateway.Pid);
            await Task.Delay(TimeSpan.FromSeconds(seconds));
            var calls = await KeepaliveCallsAsync(http) - before;
            var cores = cpu.CoresSince();
            await held.CloseAllAsync();
            return (calls / seconds, lease, cores);
        }

        private static async Task<double> KeepaliveCallsAsync(HttpClient http) =>
            System.Text.RegularExpressions.Regex.Matches(await http.GetStringAsync("/metrics"), @"^eo_session_keepalive_calls_total(\{[^}]*\})? (\S+)", System.Text.RegularExpressions.RegexOptions.Multiline)
                .Sum(m => double.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));

        /// <summary>The gateway's CPU with no nodes, then with <paramref name="count"/> offline ephemeral nodes waiting for
        /// their removal (the default 30-minute timeout), each over <paramref name="seconds"/>.</summary>
        public static async Task<(double Empty, double Waiting)> OfflineAsync(int count, int seconds)
        {
            await using var gateway = await HostProcess.StartGatewayAsync(GatewaySettings());
            using var http = Admin(gateway.HttpUrl);
            var client = new ControlService.ControlServiceClient(Channel(GrpcUrl(gateway)));
            var key = await CreateKeyAsync(http, "bench", ephemeral: true, tags: []);
            await Task.Delay(TimeSpan.FromSeconds(5));
            var empty = ProcessCpu.Of(gateway.Pid);
            await Task.Delay(TimeSpan.FromSeconds(seconds));
            var emptyMsPerSecond = empty.MillisecondsSince() / seconds;

            await RegisterManyAsync(client, key, count, "gone");
            await Task.Delay(TimeSpan.FromSeconds(10)); // the registrations' own after-work settles
            var waiting = ProcessCpu.Of(gateway.Pid);
            await Task.Delay(TimeSpan.FromSeconds(seconds));
            return (emptyMsPerSecond, waiting.MillisecondsSince() / seconds);
        }

        public static async Task<SizeResult> TailnetSizeAsync(int size, int seconds, int rate)
        {
            await using var gateway = await HostProcess.StartGatewayAsync(GatewaySettings());
            using var http = Admin(gateway.HttpUrl);
            var client = new ControlService.ControlServiceClient(Channel(GrpcUrl(gateway)));
            // Ten watchers see the CI jobs; the rest of the tailnet (idle nodes) neither sees them nor is seen.
            const string policy = """{"tagOwners":{"tag:watch":[],"tag:ci":[],"tag:idle":[]},"acls":[{"action":"accept","src":["tag:watch"],"dst":["tag:ci:*"]},{"action":"accept","src":["tag:idle"],"dst":["tag:idle:22"]}]}""";
            await PutPolicyAsync(http, policy);

            var idleKey = await CreateKeyAsync(http, "bench", ephemeral: false, tags: ["tag:idle"]);
            var watchKey = await CreateKeyAsync(http, "bench", ephemeral: false, tags: ["tag:watch"]);
            var ciKey = await CreateKeyAsync(http, "bench", ephemeral: true, tags: ["tag:ci"]);
            await RegisterManyAsync(client, idleKey, size, "idle");
            var commits = new ConcurrentDictionary<long, double>();
            var latency = new Histogram();
            var measuring = false;
            var watchers = new StreamSet(GrpcUrl(gateway), await RegisterManyAsync(client, watchKey, 10, "watch"), message =>
            {
                if (!message.IsDelta || !Volatile.Read(ref measuring))
                {
                    return;
                }

                var now = NowMs();
                foreach (var change in message.Changes)
                {
                    if (commits.TryGetValue(change, out var t))
                    {
                        latency.Record(now - t);
                    }
                }
            });
            await watchers.OpenAllAsync();
            await Task.Delay(2000);

            // The process's own background work (membership, timers, heartbeats), subtracted from the change cost.
            var idle = ProcessCpu.Of(gateway.Pid);
            await Task.Delay(TimeSpan.FromSeconds(5));
            var idleMsPerSecond = idle.MillisecondsSince() / 5;

            var cpu = ProcessCpu.Of(gateway.Pid);
            Volatile.Write(ref measuring, true);
            var changes = await ChurnAsync(client, ciKey, rate, seconds, commits, "ci", new Histogram());
            await Task.Delay(1000);
            Volatile.Write(ref measuring, false);
            var cpuMs = cpu.MillisecondsSince();
            await watchers.CloseAllAsync();
            return new SizeResult(changes, cpuMs / changes, idleMsPerSecond, latency);
        }

        private static Dictionary<string, string> GatewaySettings()
        {
            var settings = new Dictionary<string, string>
            {
                ["Admin:ApiKey"] = AdminKey,
                ["RateLimits:Enabled"] = "false", // thousands of streams from one address
                ["Logging:LogLevel:Default"] = "Warning",
                ["Gateway:StreamBufferSize"] = "1024",
            };
            if (BatchWindow is { } window)
            {
                settings["Map:BatchWindow"] = window.ToString("c");
            }

            return settings;
        }

        /// <summary>Joins and leaves at <paramref name="rate"/> each per second; returns how many changes were made. The
        /// last <paramref name="rate"/> nodes stay, unless <paramref name="leaveNone"/>.</summary>
        private static async Task<long> ChurnAsync(ControlService.ControlServiceClient client, string key, int rate, int seconds,
            ConcurrentDictionary<long, double> commits, string prefix, Histogram registration, bool leaveNone = false)
        {
            var live = new ConcurrentQueue<(string Id, string Token)>();
            long changes = 0;
            var interval = TimeSpan.FromSeconds(1.0 / rate);
            var until = DateTime.UtcNow + TimeSpan.FromSeconds(seconds);
            var tick = 0;
            using var timer = new PeriodicTimer(interval);
            var inflight = new List<Task>();
            while (DateTime.UtcNow < until && await timer.WaitForNextTickAsync())
            {
                var n = tick++;
                inflight.Add(Task.Run(async () =>
                {
                    // Timed from the request: a change is delivered no earlier than it is asked for (conservative).
                    var requested = NowMs();
                    commits[MapWire.Key('+', $"{prefix}-{n}")] = requested;
                    var registered = await client.RegisterAsync(new RegisterRequest { AuthKey = key, NodeKey = NodeKey(), Hostname = $"{prefix}-{n}" });
                    registration.Record(NowMs() - requested);
                    live.Enqueue((registered.Node.Id, registered.NodeToken));
                    Interlocked.Increment(ref changes);
                }));
                if (n >= rate && live.TryDequeue(out var leaving))
                {
                    inflight.Add(Task.Run(async () =>
                    {
                        commits[MapWire.Key('-', leaving.Id)] = NowMs();
                        await client.LogoutAsync(new LogoutRequest(), Bearer(leaving.Token));
                        Interlocked.Increment(ref changes);
                    }));
                }
            }

            await Task.WhenAll(inflight);
            if (leaveNone)
            {
                await Task.WhenAll(live.Select(node => client.LogoutAsync(new LogoutRequest(), Bearer(node.Token)).ResponseAsync));
            }

            return Interlocked.Read(ref changes);
        }

        private static async Task<string[]> RegisterManyAsync(ControlService.ControlServiceClient client, string key, int count, string prefix)
        {
            var tokens = new string[count];
            using var gate = new SemaphoreSlim(64);
            await Task.WhenAll(Enumerable.Range(0, count).Select(async i =>
            {
                await gate.WaitAsync();
                try
                {
                    tokens[i] = (await client.RegisterAsync(new RegisterRequest { AuthKey = key, NodeKey = NodeKey(), Hostname = $"{prefix}-{i}" })).NodeToken;
                }
                finally
                {
                    gate.Release();
                }
            }));
            return tokens;
        }

        private static async Task<string> CreateKeyAsync(HttpClient http, string tailnet, bool ephemeral, string[] tags)
        {
            var response = await http.PostAsJsonAsync($"/api/v1/tailnets/{tailnet}/keys", new { reusable = true, ephemeral, preauthorized = true, tags });
            return (await response.EnsureSuccessStatusCode().Content.ReadFromJsonAsync<JsonElement>()).GetProperty("key").GetString()!;
        }

        private static async Task PutPolicyAsync(HttpClient http, string policy)
        {
            using var put = new HttpRequestMessage(HttpMethod.Put, "/api/v1/tailnets/bench/policy") { Content = new StringContent(policy) };
            (await http.SendAsync(put)).EnsureSuccessStatusCode();
        }

        private static HttpClient Admin(Uri url)
        {
            var http = new HttpClient { BaseAddress = url };
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
            return http;
        }

        private static Uri GrpcUrl(HostProcess gateway) =>
            new(System.Text.RegularExpressions.Regex.Match(gateway.Output, @"gRPC:\s+(\S+)").Groups[1].Value);

        public static GrpcChannel Channel(Uri url) => GrpcChannel.ForAddress(url, new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler { EnableMultipleHttp2Connections = true },
            MaxReceiveMessageSize = 64 * 1024 * 1024,
        });

        public static Metadata Bearer(string token) => new() { { "authorization", "Bearer " + token } };

        /// <summary>Wall-clock milliseconds since the Unix epoch: comparable across processes on this machine.</summary>
        public static double NowMs() => (DateTime.UtcNow - DateTime.UnixEpoch).TotalMilliseconds;

        private static string NodeKey() => "nodekey:" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));

        public static async Task Until(Func<Task<bool>> condition, string what)
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(120);
            while (!await condition())
            {
                if (DateTime.UtcNow > deadline)
                {
                    throw new TimeoutException(what);
                }

                await Task.Delay(100);
            }
        }
    }

    /// <summary>A process's CPU time from /proc (user + system), as cores used over wall time.</summary>
    public sealed class ProcessCpu
    {
        private readonly int _pid;
        private readonly double _startCpuSeconds;
        private readonly Stopwatch _wall = Stopwatch.StartNew();

        private ProcessCpu(int pid)
        {
            _pid = pid;
            _startCpuSeconds = CpuSeconds(pid);
        }

        public static ProcessCpu Of(int pid) => new(pid);

        public double CoresSince(TimeSpan exclude = default) =>
            (CpuSeconds(_pid) - _startCpuSeconds) / (_wall.Elapsed - exclude).TotalSeconds;

        public double MillisecondsSince() => (CpuSeconds(_pid) - _startCpuSeconds) * 1000;

        private static double CpuSeconds(int pid)
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return (long.Parse(fields[11]) + long.Parse(fields[12])) / 100.0; // utime, stime in clock ticks (USER_HZ = 100)
        }
    }
}
