using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using EphemeralOrleans.Testing;
using EphemeralOrleans.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace EphemeralOrleans.Tests;

/// <summary>
/// Durability on a real PostgreSQL through the Orleans ADO.NET providers, with the gateway (and its co-hosted silo) as a
/// real process that is stopped, or killed with SIGKILL, and started again.
/// </summary>
public sealed class PostgresDurabilityTests : PostgresTest
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan Slack = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan ReminderPeriod = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan SessionLease = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan Tolerance = TimeSpan.FromSeconds(2);
    [PostgresFact]
    public Task After_kill_9_a_new_silo_finds_keys_and_nodes_and_the_pending_removals_fire() => RestartScenarioAsync(kill: true);

    [PostgresFact]
    public Task After_a_graceful_stop_a_new_silo_finds_keys_and_nodes_and_the_pending_removals_fire() => RestartScenarioAsync(kill: false);

    [PostgresFact]
    public async Task The_schema_applies_twice_and_indexes_reminders_by_grain_hash()
    {
        var connectionString = await NewDatabaseAsync("schema");
        await Grains.Storage.PostgresSchema.ApplyAsync(connectionString, NullLogger.Instance);
        await Grains.Storage.PostgresSchema.ApplyAsync(connectionString, NullLogger.Instance);

        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'orleansreminderstable' AND indexdef LIKE '%(serviceid, grainhash)%'", connection);
        Assert.Equal(1L, await command.ExecuteScalarAsync());
        await using var queries = new NpgsqlCommand("SELECT count(*) FROM orleansquery", connection);
        Assert.Equal(21L, await queries.ExecuteScalarAsync());
    }

    [PostgresFact]
    public async Task Range_reads_of_reminders_use_the_grain_hash_index_at_100000_reminders()
    {
        var connectionString = await NewDatabaseAsync("reminders");
        await Grains.Storage.PostgresSchema.ApplyAsync(connectionString, NullLogger.Instance);
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using (var fill = new NpgsqlCommand(
            "INSERT INTO orleansreminderstable (serviceid, grainid, remindername, starttime, period, grainhash, version) "
            + "SELECT 'ephemeral-orleans', 'node/' || i, 'lifecycle', now(), 60000, hashint4(i), 0 FROM generate_series(1, 100000) AS i; "
            + "ANALYZE orleansreminderstable;", connection))
        {
            await fill.ExecuteNonQueryAsync();
        }

        // The provider's own query text, as a silo owning a sixteenth of the hash ring would run it.
        await using var queryText = new NpgsqlCommand("SELECT querytext FROM orleansquery WHERE querykey = 'ReadRangeRows1Key'", connection);
        var rangeQuery = ((string)(await queryText.ExecuteScalarAsync())!)
            .Replace("@ServiceId", "'ephemeral-orleans'").Replace("@BeginHash", "0").Replace("@EndHash", (int.MaxValue / 16).ToString());
        await using var explain = new NpgsqlCommand("EXPLAIN (FORMAT JSON) " + rangeQuery.Trim().TrimEnd(';'), connection);
        var plan = (string)(await explain.ExecuteScalarAsync())!;
        Assert.Contains("ix_orleansreminderstable_hash", plan);
        Assert.DoesNotContain("\"Seq Scan\"", plan);
    }

    private async Task RestartScenarioAsync(bool kill)
    {
        var connectionString = await NewDatabaseAsync(kill ? "kill" : "stop");
        var settings = new Dictionary<string, string>
        {
            ["Storage:Provider"] = "Postgres",
            ["ConnectionStrings:Postgres"] = connectionString,
            ["Admin:ApiKey"] = GatewayClient.AdminKey,
            ["Ephemeral:InactivityTimeout"] = "00:00:10",
            ["Ephemeral:ReminderPeriod"] = "00:00:02",
            ["Silo:MinimumReminderPeriod"] = "00:00:01",
            ["Map:KeepAliveInterval"] = "00:00:01",
            // The restarted silo comes back on the same endpoint, which retires its dead predecessor at once.
            ["Silo:AdvertisedAddress"] = "127.0.0.1",
            ["Silo:Port"] = FreePort.Next().ToString(),
            ["Silo:GatewayPort"] = FreePort.Next().ToString(),
            ["Kestrel:Endpoints:Http:Url"] = $"http://127.0.0.1:{FreePort.Next()}",
            ["Cluster:Id"] = "durability-" + Guid.NewGuid().ToString("N"),
            ["Webhooks:ReminderPeriod"] = "00:00:01",
            ["Webhooks:FirstRetryDelay"] = "00:00:00.200",
            ["Webhooks:MaxRetryDelay"] = "00:00:01",
        };

        await using var first = await HostProcess.StartGatewayAsync(settings);
        using var client = new GatewayClient(first.HttpUrl);
        // A webhook whose receiver is down until the end: every event, before the crash and after, is pending meanwhile.
        var receiverPort = FreePort.Next();
        using var created = await client.Admin.PostAsJsonAsync("/api/v1/tailnets/-/webhooks", new { url = $"http://127.0.0.1:{receiverPort}/" });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var webhookSecret = (await created.Content.ReadFromJsonAsync<JsonElement>()).Str("secret");
        var unused = await client.CreateKeyAsync(reusable: false, ephemeral: false);
        var singleUse = await client.CreateKeyAsync(reusable: false, ephemeral: false);
        var ephemeralKey = await client.CreateKeyAsync(reusable: true, ephemeral: true);
        var (durable, _) = await client.RegisterAsync(singleUse.Str("key"), hostname: "server");
        Assert.Equal(HttpStatusCode.OK, (await client.RenameNodeAsync(durable.Str("id"), "primary")).Status);
        var pendingClock = Stopwatch.StartNew();
        var (pending, _) = await client.RegisterAsync(ephemeralKey.Str("key"), hostname: "never-connects");
        var (connected, connectedToken) = await client.RegisterAsync(ephemeralKey.Str("key"), hostname: "streaming");
        var stream = await client.OpenMapAsync(connectedToken);
        await stream.WaitForAsync(m => m.Type() == "full", TimeSpan.FromSeconds(10), "full map");

        // A trust policy, and a token that registered a node through it.
        await using var issuer = await TestIssuer.StartAsync();
        var trust = await client.TryCreateTrustPolicyAsync(new { issuer = issuer.Issuer, audiences = new[] { "eo" }, subject = "repo:acme/*", description = "CI" });
        Assert.Equal(HttpStatusCode.Created, trust.Status);
        var usedToken = issuer.Mint("repo:acme/api", "eo");
        Assert.Equal(HttpStatusCode.OK, (await client.TryRegisterWithTokenAsync(usedToken, hostname: "ci")).Status);

        // The audit log so far: it must come back unchanged, and continue without reusing an id.
        var logBefore = await client.AllEventsAsync();
        Assert.Contains(logBefore, e => e.Str("type") == "trust_policy.put");
        Assert.Equal(4, logBefore.Count(e => e.Str("type") == "node.registered"));
        if (kill)
        {
            await first.KillAsync();
        }
        else
        {
            await first.StopAsync(TimeSpan.FromSeconds(60));
        }

        await stream.DisposeAsync();
        // Started before the new process: its silo may reactivate nodes (their reminders) before the gateway says it is
        // ready, so this is the earliest moment a node's clock can have restarted.
        var recovered = Stopwatch.StartNew();
        await using var second = await HostProcess.StartGatewayAsync(settings);

        // The trust policy is still there; the token that registered a node still registers no other.
        var policies = await client.Admin.GetFromJsonAsync<JsonElement>("/api/v1/tailnets/-/trust-policies");
        var policy = Assert.Single(policies.GetProperty("trustPolicies").EnumerateArray());
        Assert.Equal((trust.Body.Str("id"), issuer.Issuer, "repo:acme/*", "CI"), (policy.Str("id"), policy.Str("issuer"), policy.Str("subject"), policy.Str("description")));
        Assert.Equal("token_replayed", (await client.TryRegisterWithTokenAsync(usedToken)).Code);
        Assert.Equal(HttpStatusCode.OK, (await client.TryRegisterWithTokenAsync(issuer.Mint("repo:acme/web", "eo"), hostname: "ci")).Status);

        // Keys: still there, with their uses; the used single-use key stays used.
        var unusedKey = await client.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/tailnets/-/keys/{unused.Str("id")}");
        Assert.Equal(0, unusedKey.GetProperty("uses").GetInt32());
        var keys = await client.Admin.GetFromJsonAsync<JsonElement>("/api/v1/tailnets/-/keys");
        Assert.Equal(3, keys.GetProperty("keys").GetArrayLength());
        var replay = await client.PostRegisterAsync(singleUse.Str("key"));
        Assert.Equal(HttpStatusCode.Forbidden, replay.StatusCode);

        // Nodes: the durable node is listed with its address; the pending removal has not fired early.
        var durableNow = await client.GetNodeAsync(durable.Str("id"));
        Assert.Equal(durable.Str("ipv4"), durableNow!.Value.Str("ipv4"));
        // Its new name survived, and the old one is free.
        Assert.Equal("primary", durableNow.Value.Str("name"));
        Assert.Contains(await client.ListNodesAsync(), n => n.Str("id") == durable.Str("id") && n.Str("name") == "primary");
        if (pendingClock.Elapsed < Timeout - TimeSpan.FromSeconds(1))
        {
            Assert.NotNull(await client.GetNodeAsync(pending.Str("id")));
        }

        // A new node gets an address no existing node has.
        var (fresh, _) = await client.RegisterAsync(ephemeralKey.Str("key"), hostname: "server");
        Assert.Equal("server", fresh.Str("name"));
        var addresses = (await client.ListNodesAsync()).Select(n => n.Str("ipv4")).ToArray();
        Assert.Equal(addresses.Length, addresses.Distinct().Count());
        Assert.Contains(fresh.Str("ipv4"), addresses);

        // The pending removal fires: not before its timeout, and at most a reminder period past the usual bound.
        await Poll.UntilAsync(async () => await client.GetNodeAsync(pending.Str("id")) is null, TimeSpan.FromSeconds(40), "the pending removal", everyMs: 200);
        Assert.True(pendingClock.Elapsed >= Timeout, $"removed {pendingClock.Elapsed} after registration");
        var recoveryAt = pendingClock.Elapsed - recovered.Elapsed;
        var latest = (recoveryAt > Timeout ? recoveryAt : Timeout) + Slack + ReminderPeriod + Tolerance;
        Assert.True(pendingClock.Elapsed <= latest, $"removed {pendingClock.Elapsed} after registration (cluster back at {recoveryAt})");

        // The node that was streaming when its silo went down: its clock restarted at recovery, so it outlives the others.
        await Poll.UntilAsync(async () => await client.GetNodeAsync(connected.Str("id")) is null, TimeSpan.FromSeconds(40), "the streaming node's removal", everyMs: 200);
        Assert.True(recovered.Elapsed >= Timeout, $"the streaming node went {recovered.Elapsed} after recovery");
        Assert.True(recovered.Elapsed <= ReminderPeriod + SessionLease + Timeout + Slack + Tolerance, $"the streaming node went {recovered.Elapsed} after recovery");
        Assert.NotNull(await client.GetNodeAsync(durable.Str("id")));

        // The log: what was there before, unchanged, then the events since, numbered after it; each removal recorded
        // once, with its reason, although the removals ran on a silo that had never seen these nodes.
        var logAfter = await client.AllEventsAsync();
        Assert.Equal(logBefore.Select(e => e.GetRawText()), logAfter.Take(logBefore.Length).Select(e => e.GetRawText()));
        var newIds = logAfter.Skip(logBefore.Length).Select(e => e.GetProperty("id").GetInt64()).ToArray();
        Assert.All(newIds, id => Assert.True(id > logBefore[^1].GetProperty("id").GetInt64(), $"event id {id} reused"));
        foreach (var gone in new[] { pending, connected })
        {
            var removed = Assert.Single(logAfter, e => e.Str("type") == "node.removed" && e.Str("node") == gone.Str("id"));
            Assert.Equal(("inactivity", "system"), (removed.GetProperty("data").Str("reason"), removed.Str("actor")));
            Assert.Single(logAfter, e => e.Str("type") == "address.released" && e.Str("node") == gone.Str("id"));
        }

        // The receiver comes up: every event of the log arrives, in order, each verified by the npm library.
        await using var receiver = await WebhookReceiver.StartAsync(receiverPort, webhookSecret);
        var ids = logAfter.Select(e => e.GetProperty("id").GetInt64()).ToArray();
        await Poll.UntilAsync(() => Task.FromResult(receiver.Deliveries.Select(d => d.GetProperty("eventId").GetInt64()).Distinct().Count() >= ids.Length),
            TimeSpan.FromSeconds(30), "every event at the webhook receiver", why: () => $"{receiver.Deliveries.Length} deliveries of {ids.Length} events");
        Assert.All(receiver.Deliveries, d => Assert.True(d.GetProperty("ok").GetBoolean(), d.GetRawText()));
        Assert.Equal(ids, receiver.Deliveries.Select(d => d.GetProperty("eventId").GetInt64()).Distinct().Take(ids.Length));

        // No secret in the table: not a key's secret, a node token or an ID token.
        await using var data = NpgsqlDataSource.Create(connectionString);
        await using var dump = data.CreateCommand("SELECT string_agg(type || actor || target || coalesce(nodeid, '') || data::text, '') FROM eo_events");
        var table = (string)(await dump.ExecuteScalarAsync())!;
        // Nor in what the gateways logged.
        var logs = first.Output + second.Output;
        // The secret part of each, cut at its format's own separator: an ID token's base64url signature may hold '-' and
        // '_', and cutting it there once left a one-letter "secret" that any log contains.
        foreach (var secret in new[]
        {
            After(unused.Str("key"), '-'), After(singleUse.Str("key"), '-'), After(ephemeralKey.Str("key"), '-'),
            After(connectedToken, '.'), After(usedToken, '.'), After(webhookSecret, '_'),
        })
        {
            Assert.True(secret.Length >= 16, secret);
            Assert.DoesNotContain(secret, table);
            Assert.DoesNotContain(secret, logs);
        }

        static string After(string text, char separator) => text[(text.LastIndexOf(separator) + 1)..];
    }
}
