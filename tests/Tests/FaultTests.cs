using System.Diagnostics;
using System.Net;
using System.Text.Json;
using EphemeralOrleans.Testing;
using EphemeralOrleans.Tests.Infrastructure;
using Npgsql;
using Xunit.Abstractions;

namespace EphemeralOrleans.Tests;

/// <summary>
/// The cluster topology (two standalone silos, a gateway in client mode, PostgreSQL) as real processes, under churn,
/// with processes killed and restarted. Held nodes keep map streams open (over gRPC, reconnecting like agents);
/// offline nodes registered and never connected. Figures go to the test output (docs/reliability.md has a run).
/// </summary>
[Collection(TimingCollection.Name)]
public sealed class FaultTests(ITestOutputHelper log) : PostgresTest
{
    private static readonly Stopwatch Clock = Stopwatch.StartNew();
    private static readonly TimeSpan ReminderPeriod = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan Tolerance = TimeSpan.FromSeconds(3);
    private static readonly TimeSpan KeepAliveInterval = TimeSpan.FromSeconds(1);

    [PostgresFact]
    public async Task Killing_a_silo_during_churn_removes_every_offline_node_in_time_and_no_connected_one()
    {
        // Connected nodes must survive because their gateway's heartbeats find another route, not because the timeout
        // outlasts the outage (the dead silo was declared dead 13-14 s after the kill at Orleans' default probes).
        var timeout = TimeSpan.FromSeconds(10);
        var slack = TimeSpan.FromSeconds(2);
        await using var churn = await StartChurnAsync("kill", timeout, within: TimeSpan.FromSeconds(90));
        var (topology, http, streams, held) = (churn.Topology, churn.Http, churn.Streams, churn.Held);
        var offline = await RegisterManyAsync(http, churn.Key, 300, "offline");

        // A registration every 0.2 s from 1 s before the kill to 15 s after it: each is answered, none with a 5xx (calls
        // that a silo took down with it are retried inside the gateway until the cluster has rerouted).
        var registering = new List<Task<(string Outcome, TimeSpan Took)>>();
        var registeringUntil = Clock.Elapsed + TimeSpan.FromSeconds(16);
        var feeder = Task.Run(async () =>
        {
            for (var n = 0; Clock.Elapsed < registeringUntil; n++)
            {
                var sent = Clock.Elapsed;
                var name = $"during-{n}";
                registering.Add(Task.Run(async () =>
                {
                    try
                    {
                        var reply = await http.TryRegisterAsync(churn.Key, hostname: name);
                        return (reply.Status == HttpStatusCode.OK ? "ok" : $"{(int)reply.Status} {reply.Code}", Clock.Elapsed - sent);
                    }
                    catch (Exception exception)
                    {
                        return ($"{exception.GetType().Name}: {exception.Message}", Clock.Elapsed - sent);
                    }
                }));
                await Task.Delay(200);
            }
        });
        await Task.Delay(1000);

        var killedAt = Clock.Elapsed;
        await topology.KillSiloAsync(1);
        var declaredDead = await WaitDeclaredDeadAsync(churn.ConnectionString, topology.SiloPort(1));
        log.WriteLine($"silo declared dead {(declaredDead - killedAt).TotalSeconds:0.0} s after kill -9");
        // About 1.5 s at 1 s probes; the bound leaves room for a loaded machine (docs/reliability.md has the figures).
        Assert.True(declaredDead - killedAt < TimeSpan.FromSeconds(5), $"declared dead only {(declaredDead - killedAt).TotalSeconds:0.0} s after the kill");

        // Watched from now on: the offline nodes' deadlines fall while the registrations still go on.
        var removal = WaitRemovedAsync(http, offline.Select(o => o.Id).ToHashSet(), TimeSpan.FromSeconds(120));
        await feeder;
        var replies = await Task.WhenAll(registering);
        var failed = replies.Where(r => r.Outcome != "ok").Select(r => $"{r.Outcome} after {r.Took.TotalSeconds:0.0} s").ToArray();
        log.WriteLine($"registrations through the kill: {replies.Length}, {replies.Length - failed.Length} answered 200, "
            + $"slowest {replies.Max(r => r.Took).TotalSeconds:0.0} s; others: {string.Join(", ", failed)}");
        Assert.True(failed.Length == 0, $"{failed.Length} registrations during the kill not answered 200: {string.Join("; ", failed)}");

        var removedAt = await removal;
        var lags = offline.Select(o => removedAt[o.Id] - (o.RegisteredBefore + timeout)).ToArray();
        log.WriteLine($"removal after the deadline: min {lags.Min().TotalSeconds:0.0} s, max {lags.Max().TotalSeconds:0.0} s");
        foreach (var node in offline)
        {
            Assert.True(removedAt[node.Id] >= node.RegisteredBefore + timeout, $"{node.Id} removed before its timeout");
            var bound = Max(node.RegisteredBefore + timeout, declaredDead) + slack + ReminderPeriod + Tolerance;
            Assert.True(removedAt[node.Id] <= bound, $"{node.Id} removed {(removedAt[node.Id] - bound).TotalSeconds:0.0} s past its bound");
        }

        // Connected nodes outlive two more timeouts after the recovery, and their streams work.
        await Task.Delay(timeout + slack);
        await AssertHeldAsync(http, streams, held);
        await AssertConsistentAsync(http, churn.KeyId, 600 + replies.Length, held.Concat(offline));
    }

    [PostgresFact]
    public async Task After_a_gateway_restart_and_a_whole_cluster_restart_nodes_reconnect_and_pending_removals_fire()
    {
        var timeout = TimeSpan.FromSeconds(45);
        var slack = TimeSpan.FromSeconds(4.5);
        await using var churn = await StartChurnAsync("restart", timeout, within: TimeSpan.FromSeconds(60));
        var (topology, http, streams, held) = (churn.Topology, churn.Http, churn.Streams, churn.Held);

        // The gateway alone: agents come back to the same nodes.
        var restarted = Clock.Elapsed;
        await topology.StopGatewayAsync();
        await topology.StartGatewayAsync();
        await Poll.UntilAsync(() => Task.FromResult(streams.All(s => s.FullMaps > 1)), TimeSpan.FromSeconds(60), "every held stream back", everyMs: 100,
            why: () => $"{streams.Count(s => s.Gone is not null)} gone ({streams.FirstOrDefault(s => s.Gone is not null)?.Gone}), full maps {string.Join(',', streams.Select(s => s.FullMaps).Distinct())}");
        log.WriteLine($"gateway restart: every agent back on its node {(Clock.Elapsed - restarted).TotalSeconds:0.0} s after the stop began");

        // The silos alone, for 30 s, under a running gateway: it says not-ready, but its agents keep their streams and
        // see a keepalive every second throughout (one lease renewal per gateway, nothing per stream, to fail meanwhile).
        await Poll.UntilAsync(() => Task.FromResult(streams.All(s => s.Silence < TimeSpan.FromSeconds(1.5))), TimeSpan.FromSeconds(30), "every stream live", everyMs: 100);
        var reconnectsBefore = streams.Sum(s => s.Reconnects);
        streams.ForEach(s => s.ResetLongestSilence());
        await topology.StopSiloAsync(0);
        await topology.StopSiloAsync(1);
        var silosDown = Stopwatch.StartNew();
        await Poll.UntilAsync(async () => (await http.Http.GetAsync("/readyz")).StatusCode == HttpStatusCode.ServiceUnavailable,
            TimeSpan.FromSeconds(30), "/readyz to report the cluster gone");
        await Task.Delay(TimeSpan.FromSeconds(30) - silosDown.Elapsed);
        var longestSilence = streams.Max(s => s.LongestSilence);
        log.WriteLine($"silos down for {silosDown.Elapsed.TotalSeconds:0.0} s: longest silence on any of {streams.Count} streams {longestSilence.TotalSeconds:0.00} s, "
            + $"{streams.Sum(s => s.Reconnects) - reconnectsBefore} stream reopenings");
        Assert.All(streams, s => Assert.Null(s.Gone));
        Assert.Equal(0, streams.Sum(s => s.Reconnects) - reconnectsBefore);
        Assert.True(longestSilence <= KeepAliveInterval + TimeSpan.FromSeconds(1), $"a stream was silent for {longestSilence.TotalSeconds:0.00} s while the silos were down");
        await topology.StartSiloAsync(0);
        await topology.StartSiloAsync(1);
        await Poll.UntilAsync(async () => (await http.Http.GetAsync("/readyz")).StatusCode == HttpStatusCode.OK,
            TimeSpan.FromSeconds(60), "/readyz to report the cluster back");
        await Poll.UntilAsync(() => Task.FromResult(streams.All(s => s.Gone is null && s.Silence < TimeSpan.FromSeconds(3))), TimeSpan.FromSeconds(30),
            "every stream to carry keepalives again", everyMs: 200);
        log.WriteLine($"silos down and up under a running gateway: every agent still on its node; {streams.Sum(s => s.Reconnects) - reconnectsBefore} stream reopenings");

        // The whole cluster, gracefully, with 300 removals pending across it.
        var offline = await RegisterManyAsync(http, churn.Key, 300, "offline");
        var stopped = Clock.Elapsed;
        await topology.StopGatewayAsync();
        await topology.StopSiloAsync(0);
        await topology.StopSiloAsync(1);
        await topology.StartSiloAsync(0);
        await topology.StartSiloAsync(1);
        await topology.StartGatewayAsync();
        var recovered = Clock.Elapsed;
        log.WriteLine($"cluster down and up again in {(recovered - stopped).TotalSeconds:0.0} s");
        await Poll.UntilAsync(() => Task.FromResult(streams.All(s => s.FullMaps > 2)), TimeSpan.FromSeconds(60), "every held stream back", everyMs: 100,
            why: () => $"{streams.Count(s => s.Gone is not null)} gone ({streams.FirstOrDefault(s => s.Gone is not null)?.Gone}), full maps {string.Join(',', streams.Select(s => s.FullMaps).Distinct())}");
        log.WriteLine($"every agent back {(Clock.Elapsed - recovered).TotalSeconds:0.0} s after the cluster was up");
        var pending = (await ListWhenAvailableAsync(http)).Count(n => n.Str("hostname").StartsWith("offline-", StringComparison.Ordinal));
        log.WriteLine($"{pending} of {offline.Count} removals still pending after the restart");
        Assert.True(pending > 0, "every removal fired before the cluster restart: the restart tested nothing");

        var removedAt = await WaitRemovedAsync(http, offline.Select(o => o.Id).ToHashSet(), TimeSpan.FromSeconds(120));
        foreach (var node in offline)
        {
            Assert.True(removedAt[node.Id] >= node.RegisteredBefore + timeout, $"{node.Id} removed before its timeout");
            var bound = Max(node.RegisteredBefore + timeout, recovered) + slack + ReminderPeriod + Tolerance;
            Assert.True(removedAt[node.Id] <= bound, $"{node.Id} removed {(removedAt[node.Id] - bound).TotalSeconds:0.0} s past its bound");
        }

        await AssertHeldAsync(http, streams, held);
        await AssertConsistentAsync(http, churn.KeyId, 600, held.Concat(offline));
    }

    [PostgresFact]
    public async Task While_postgres_restarts_under_load_requests_fail_cleanly_and_nothing_is_lost_or_duplicated()
    {
        var connectionString = await NewDatabaseAsync("pgdown");
        await using var topology = await ClusterTopology.StartAsync(connectionString, Settings(TimeSpan.FromMinutes(5)));
        using var http = new GatewayClient(topology.HttpUrl);
        var key = await http.CreateKeyAsync(reusable: true, ephemeral: true);

        var results = new System.Collections.Concurrent.ConcurrentBag<(HttpStatusCode Status, string? Code, JsonElement Node, string NodeKey, TimeSpan At)>();
        using var stopLoad = new CancellationTokenSource();
        var load = Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
        {
            while (!stopLoad.IsCancellationRequested)
            {
                var nodeKey = ApiClient.NewNodeKey();
                var reply = await http.TryRegisterAsync(key.Str("key"), nodeKey, "load");
                results.Add((reply.Status, reply.Code, reply.Status == HttpStatusCode.OK ? reply.Body.GetProperty("node").Clone() : default, nodeKey, Clock.Elapsed));
                if (reply.Status != HttpStatusCode.OK)
                {
                    await Task.Delay(100);
                }
            }
        })).ToArray();

        await Task.Delay(TimeSpan.FromSeconds(3));
        var down = Clock.Elapsed;
        await Postgres.KillAsync();
        await Task.Delay(TimeSpan.FromSeconds(5));
        await Postgres.StartAgainAsync();
        var up = Clock.Elapsed;
        await Poll.UntilAsync(() => Task.FromResult(results.Any(r => r.At > up && r.Status == HttpStatusCode.OK)), TimeSpan.FromSeconds(60), "registrations to succeed again", everyMs: 200);
        var recoveredAfter = results.Where(r => r.At > up && r.Status == HttpStatusCode.OK).Min(r => r.At) - up;
        await Task.Delay(TimeSpan.FromSeconds(2));
        await stopLoad.CancelAsync();
        await Task.WhenAll(load);

        var all = results.ToArray();
        var during = all.Count(r => r.At > down && r.At < up && r.Status != HttpStatusCode.OK);
        log.WriteLine($"{all.Length} registrations: {all.Count(r => r.Status == HttpStatusCode.OK)} ok, {during} refused while PostgreSQL was down; "
            + $"first success {recoveredAfter.TotalSeconds:0.0} s after it was back");
        Assert.All(all, r => Assert.True(r.Status is HttpStatusCode.OK or HttpStatusCode.ServiceUnavailable, $"{r.Status} {r.Code}"));
        Assert.True(during > 0, "no request was refused while PostgreSQL was down");

        // Nothing lost: every acknowledged node is listed. Nothing duplicated: one node per node key and per address.
        var acknowledged = all.Where(r => r.Status == HttpStatusCode.OK).ToArray();
        var listed = await ListWhenAvailableAsync(http);
        var listedIds = listed.Select(n => n.Str("id")).ToHashSet();
        Assert.All(acknowledged, r => Assert.Contains(r.Node.Str("id"), listedIds));
        Assert.Equal(listed.Length, listed.Select(n => n.Str("nodeKey")).Distinct().Count());
        Assert.Equal(listed.Length, listed.Select(n => n.Str("ipv4")).Distinct().Count());
        var uses = (await http.GetKeyAsync(key.Str("id"))).Body.GetProperty("uses").GetInt32();
        Assert.True(uses >= acknowledged.Length, $"{uses} uses for {acknowledged.Length} registrations");
    }

    private static Dictionary<string, string> Settings(TimeSpan timeout) => new()
    {
        ["Admin:ApiKey"] = ApiClient.AdminKey,
        ["Ephemeral:InactivityTimeout"] = timeout.ToString("c"),
        ["Ephemeral:ReminderPeriod"] = ReminderPeriod.ToString("c"),
        ["Silo:MinimumReminderPeriod"] = "00:00:01",
        ["Map:KeepAliveInterval"] = KeepAliveInterval.ToString("c"),
    };

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    /// <summary>The cluster topology with a reusable ephemeral key and 300 nodes holding map streams.</summary>
    private async Task<Churn> StartChurnAsync(string database, TimeSpan timeout, TimeSpan within)
    {
        var connectionString = await NewDatabaseAsync(database);
        var topology = await ClusterTopology.StartAsync(connectionString, Settings(timeout));
        var churn = new Churn(connectionString, topology, new GatewayClient(topology.HttpUrl), Grpc.Net.Client.GrpcChannel.ForAddress(topology.GrpcUrl));
        try
        {
            var key = await churn.Http.CreateKeyAsync(reusable: true, ephemeral: true);
            (churn.Key, churn.KeyId) = (key.Str("key"), key.Str("id"));
            churn.Held.AddRange(await RegisterManyAsync(churn.Http, churn.Key, 300, "held"));
            var control = new Protocol.V1.ControlService.ControlServiceClient(churn.Channel);
            churn.Streams.AddRange(churn.Held.Select(h => HeldStream.Start(control, h.Id, h.Token)));
            await Poll.UntilAsync(() => Task.FromResult(churn.Streams.All(s => s.FullMaps > 0)), within, "every held stream's full map", everyMs: 200);
            return churn;
        }
        catch
        {
            await churn.DisposeAsync();
            throw;
        }
    }

    private sealed class Churn(string connectionString, ClusterTopology topology, GatewayClient http, Grpc.Net.Client.GrpcChannel channel)
        : IAsyncDisposable
    {
        public string ConnectionString { get; } = connectionString;

        public ClusterTopology Topology { get; } = topology;

        public GatewayClient Http { get; } = http;

        public Grpc.Net.Client.GrpcChannel Channel { get; } = channel;

        public string Key { get; set; } = "";

        public string KeyId { get; set; } = "";

        public List<Registered> Held { get; } = [];

        public List<HeldStream> Streams { get; } = [];

        public async ValueTask DisposeAsync()
        {
            await Task.WhenAll(Streams.Select(s => s.DisposeAsync().AsTask()));
            Channel.Dispose();
            Http.Dispose();
            await Topology.DisposeAsync();
        }
    }

    private sealed record Registered(string Id, string Token, string Ipv4, TimeSpan RegisteredBefore);

    private static async Task<List<Registered>> RegisterManyAsync(GatewayClient http, string key, int count, string prefix)
    {
        var registered = new System.Collections.Concurrent.ConcurrentBag<Registered>();
        await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (i, _) =>
        {
            var before = Clock.Elapsed;
            var (node, token) = await http.RegisterAsync(key, hostname: $"{prefix}-{i}");
            registered.Add(new Registered(node.Str("id"), token, node.Str("ipv4"), before));
        });
        return [.. registered];
    }

    /// <summary>Polls the node list (through outages) until none of <paramref name="ids"/> is left; when each went.</summary>
    private static async Task<Dictionary<string, TimeSpan>> WaitRemovedAsync(GatewayClient http, HashSet<string> ids, TimeSpan within)
    {
        var removedAt = new Dictionary<string, TimeSpan>();
        var deadline = Clock.Elapsed + within;
        while (removedAt.Count < ids.Count)
        {
            Assert.True(Clock.Elapsed < deadline, $"{ids.Count - removedAt.Count} offline nodes still listed after {within}");
            var listed = await TryListAsync(http);
            if (listed is not null)
            {
                var present = listed.Select(n => n.Str("id")).ToHashSet();
                foreach (var id in ids.Where(id => !present.Contains(id) && !removedAt.ContainsKey(id)))
                {
                    removedAt[id] = Clock.Elapsed;
                }
            }

            await Task.Delay(250);
        }

        return removedAt;
    }

    private static async Task<JsonElement[]?> TryListAsync(GatewayClient http)
    {
        try
        {
            return await http.ListNodesAsync();
        }
        catch (Exception exception) when (exception is HttpRequestException or TaskCanceledException)
        {
            return null;
        }
    }

    private static async Task<JsonElement[]> ListWhenAvailableAsync(GatewayClient http)
    {
        JsonElement[]? listed = null;
        await Poll.UntilAsync(async () => (listed = await TryListAsync(http)) is not null, TimeSpan.FromSeconds(30), "the node list");
        return listed!;
    }

    private static async Task<TimeSpan> WaitDeclaredDeadAsync(string connectionString, int port)
    {
        await Poll.UntilAsync(async () =>
        {
            await using var connection = new NpgsqlConnection(connectionString);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand("SELECT count(*) FROM orleansmembershiptable WHERE port = @port AND status = 6", connection);
            command.Parameters.AddWithValue("port", port);
            return (long)(await command.ExecuteScalarAsync())! > 0;
        }, TimeSpan.FromSeconds(90), "the killed silo to be declared dead", everyMs: 200);
        return Clock.Elapsed;
    }

    /// <summary>Every held node is listed and online, and its stream is alive (keepalives every second).</summary>
    private static async Task AssertHeldAsync(GatewayClient http, List<HeldStream> streams, List<Registered> held)
    {
        Assert.All(streams, s => Assert.Null(s.Gone));
        await Poll.UntilAsync(() => Task.FromResult(streams.All(s => s.Silence < TimeSpan.FromSeconds(3))), TimeSpan.FromSeconds(30),
            "every held stream to be alive", everyMs: 200, why: () =>
            {
                var silent = streams.Where(s => s.Silence >= TimeSpan.FromSeconds(3)).ToArray();
                return $"{silent.Length} silent (longest {silent.Max(s => s.Silence).TotalSeconds:0} s), reconnects {streams.Sum(s => s.Reconnects)}, "
                    + $"full maps {string.Join(',', silent.Take(5).Select(s => s.FullMaps))}";
            });
        var listed = (await ListWhenAvailableAsync(http)).ToDictionary(n => n.Str("id"));
        Assert.All(held, h => Assert.True(listed.ContainsKey(h.Id), $"held node {h.Id} was removed"));
        await Poll.UntilAsync(async () => (await http.ListNodesAsync()).Count(n => n.GetProperty("online").GetBoolean()) == held.Count,
            TimeSpan.FromSeconds(30), "every held node to show online");
    }

    /// <summary>No two nodes ever shared an address, and the key counted every registration once.</summary>
    private static async Task AssertConsistentAsync(GatewayClient http, string keyId, int registrations, IEnumerable<Registered> all)
    {
        var nodes = all.ToArray();
        Assert.Equal(nodes.Length, nodes.Select(n => n.Ipv4).Distinct().Count());
        var listed = await ListWhenAvailableAsync(http);
        Assert.Equal(listed.Length, listed.Select(n => n.Str("ipv4")).Distinct().Count());
        Assert.Equal(registrations, (await http.GetKeyAsync(keyId)).Body.GetProperty("uses").GetInt32());
    }
}
