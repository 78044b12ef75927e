using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using EphemeralOrleans.Testing;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>
/// The audit log (issue 19): every lifecycle path records exactly its events, with who did it and why a node went;
/// paging, filters and bad input over both transports; no secret ever in an event.
/// </summary>
public sealed class EventLogTests : GatewayTest
{
    private static readonly TimeSpan Within = TimeSpan.FromSeconds(20);

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task Each_lifecycle_path_records_exactly_its_events_with_actor_and_reason(Transport transport)
    {
        var api = Gateway.Over(transport);
        var singleUse = (await api.CreateKeyAsync(reusable: false, ephemeral: true)).Str("key");
        var reusable = await api.CreateKeyAsync(reusable: true, ephemeral: false);
        var (ephemeral, ephemeralToken) = await api.RegisterAsync(singleUse, hostname: "ci-job");
        var (server, serverToken) = await api.RegisterAsync(reusable.Str("key"), hostname: "server");
        var (doomed, _) = await api.RegisterAsync(reusable.Str("key"), hostname: "doomed");
        Assert.Equal(HttpStatusCode.OK, (await api.RenameNodeAsync(server.Str("id"), "db-1")).Status);
        Assert.Equal(HttpStatusCode.OK, (await api.SetPolicyAsync("""{"acls":[{"action":"accept","src":["*"],"dst":["*:22"]}]}""")).Status);
        Assert.Equal(HttpStatusCode.NoContent, await api.LogoutAsync(ephemeralToken));
        Assert.Equal(HttpStatusCode.NoContent, await api.LogoutAsync(serverToken));
        Assert.Equal(HttpStatusCode.NoContent, (await api.DeleteNodeAsync(doomed.Str("id"))).Status);
        Assert.Equal(HttpStatusCode.NoContent, (await api.RevokeKeyAsync(reusable.Str("id"))).Status);

        var events = await api.AllEventsAsync();
        var expected = new (string Type, string Actor, string? Node)[]
        {
            ("key.created", "admin-api", null),
            ("key.created", "admin-api", null),
            ("key.used_up", "system", null),
            ("node.registered", $"key:{KeyId(singleUse)}", ephemeral.Str("id")),
            ("node.registered", $"key:{reusable.Str("id")}", server.Str("id")),
            ("node.registered", $"key:{reusable.Str("id")}", doomed.Str("id")),
            ("node.renamed", "admin-api", server.Str("id")),
            ("policy.updated", "admin-api", null),
            ("node.removed", $"node:{ephemeral.Str("id")}", ephemeral.Str("id")),
            ("address.released", $"node:{ephemeral.Str("id")}", ephemeral.Str("id")),
            ("node.logged_out", $"node:{server.Str("id")}", server.Str("id")),
            ("node.removed", "admin-api", doomed.Str("id")),
            ("address.released", "admin-api", doomed.Str("id")),
            ("key.revoked", "admin-api", null),
        };
        Assert.Equal(expected, events.Select(e => (e.Str("type"), e.Str("actor"), NodeOf(e))).ToArray());
        var ids = events.Select(e => e.GetProperty("id").GetInt64()).ToArray();
        Assert.Equal(ids.Order(), ids);
        Assert.Equal(ids.Length, ids.Distinct().Count());

        var removal = events.First(e => e.Str("type") == "node.removed");
        Assert.Equal("logout", removal.GetProperty("data").Str("reason"));
        Assert.Equal(ephemeral.Str("ipv4"), removal.GetProperty("data").Str("ip"));
        Assert.Equal("deleted-by-admin", events.Last(e => e.Str("type") == "node.removed").GetProperty("data").Str("reason"));
        var renamed = events.Single(e => e.Str("type") == "node.renamed").GetProperty("data");
        Assert.Equal(("server", "db-1"), (renamed.Str("from"), renamed.Str("to")));
        Assert.Equal(["acls"], events.Single(e => e.Str("type") == "policy.updated").GetProperty("data").GetProperty("changed")
            .EnumerateArray().Select(c => c.GetString()));

        // Neither key secret nor node token anywhere in the log.
        var text = JsonSerializer.Serialize(events);
        foreach (var secret in new[] { singleUse, reusable.Str("key"), ephemeralToken, serverToken })
        {
            Assert.DoesNotContain(secret.Split('-', '.').Last(), text);
        }
    }

    [Fact]
    public async Task An_ephemeral_node_removed_for_inactivity_says_so_with_how_long_it_was_inactive()
    {
        var key = (await Gateway.CreateKeyAsync(ephemeral: true)).Str("key");
        var (node, _) = await Gateway.RegisterAsync(key);
        await Poll.UntilAsync(async () => await Gateway.GetNodeAsync(node.Str("id")) is null, Within, "the node to be removed");

        var removed = await Gateway.AllEventsAsync(type: "node.removed", node: node.Str("id"));
        var data = Assert.Single(removed).GetProperty("data");
        Assert.Equal("system", removed[0].Str("actor"));
        Assert.Equal("inactivity", data.Str("reason"));
        // Timeout 2 s: never removed earlier; the contract's bound is timeout + 2 s.
        Assert.InRange(data.GetProperty("inactiveSeconds").GetDouble(), 2.0, 4.5);
    }

    [Fact]
    public async Task A_key_that_expired_is_recorded_once_at_its_first_refusal()
    {
        var key = await Gateway.CreateKeyAsync(expirySeconds: 1);
        await Task.Delay(TimeSpan.FromSeconds(1.2));
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal("key_expired", (await Gateway.TryRegisterAsync(key.Str("key"))).Code);
        }

        var expired = Assert.Single(await Gateway.AllEventsAsync(type: "key.expired"));
        Assert.Equal($"key:{key.Str("id")}", expired.Str("target"));
        Assert.Equal(0, expired.GetProperty("data").GetProperty("uses").GetInt32());
    }

    [Fact]
    public async Task Device_approval_settings_expiry_and_reauthentication_are_recorded()
    {
        using (var patch = await Gateway.Admin.PatchAsJsonAsync("/api/v1/tailnets/-/settings", new { deviceApproval = true }))
        {
            Assert.Equal(HttpStatusCode.OK, patch.StatusCode);
        }

        var key = (await Gateway.CreateKeyAsync(reusable: true, ephemeral: false, preauthorized: false)).Str("key");
        var device = TestDevice.Create();
        var (node, token) = await Gateway.RegisterDeviceAsync(key, device, hostname: "laptop");
        Assert.False(node.GetProperty("authorized").GetBoolean());
        Assert.Equal(HttpStatusCode.OK, (await Gateway.ApproveNodeAsync(node.Str("id"))).Status);
        // The agent comes back with a new proof: same node, new token.
        var (again, _) = await Gateway.RegisterDeviceAsync(key, device, hostname: "laptop");
        Assert.Equal(node.Str("id"), again.Str("id"));
        Assert.Equal(HttpStatusCode.NoContent, (await Gateway.ExpireNodeAsync(node.Str("id"))).Status);

        var events = await Gateway.AllEventsAsync();
        Assert.Equal(["settings.updated", "key.created", "node.registered", "node.approved", "node.reauthenticated", "node.expired"],
            events.Select(e => e.Str("type")));
        Assert.False(events[2].GetProperty("data").GetProperty("authorized").GetBoolean());
        Assert.Equal("proof", events[4].GetProperty("data").Str("shownBy"));
        Assert.Equal(("admin-api", "expired-by-admin"), (events[5].Str("actor"), events[5].GetProperty("data").Str("reason")));
        Assert.Equal(HttpStatusCode.Unauthorized, await Gateway.LogoutAsync(token));
    }

    [Fact]
    public async Task A_logout_says_agent_exit_when_the_agent_says_it_exits_and_a_bad_reason_changes_nothing()
    {
        var key = (await Gateway.CreateKeyAsync(reusable: true, ephemeral: true)).Str("key");
        var (node, token) = await Gateway.RegisterAsync(key);
        var refused = await Gateway.TryLogoutAsync(token, "bored");
        Assert.Equal((HttpStatusCode.BadRequest, "invalid_reason"), (refused.Status, refused.Code));
        Assert.NotNull(await Gateway.GetNodeAsync(node.Str("id")));

        Assert.Equal(HttpStatusCode.NoContent, (await Gateway.TryLogoutAsync(token, "agent-exit")).Status);
        var removed = Assert.Single(await Gateway.AllEventsAsync(type: "node.removed"));
        Assert.Equal("agent-exit", removed.GetProperty("data").Str("reason"));
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task Pages_follow_the_cursor_and_filters_select_by_type_family_and_node(Transport transport)
    {
        var api = Gateway.Over(transport);
        var key = (await api.CreateKeyAsync(reusable: true, ephemeral: false)).Str("key");
        var nodes = new List<JsonElement>();
        for (var i = 0; i < 12; i++)
        {
            nodes.Add((await api.RegisterAsync(key, hostname: $"n{i}")).Node);
        }

        var all = await api.AllEventsAsync();
        Assert.Equal(13, all.Length);
        var paged = await api.AllEventsAsync(pageSize: 5);
        Assert.Equal(all.Select(e => e.GetProperty("id").GetInt64()), paged.Select(e => e.GetProperty("id").GetInt64()));

        // The cursor of the last page: nothing newer yet, and 'next' stays where it was.
        var last = all[^1].GetProperty("id").GetInt64().ToString();
        var empty = await api.TryListEventsAsync(since: last);
        Assert.Empty(empty.Body.GetProperty("events").EnumerateArray());
        Assert.Equal(last, empty.Body.Str("next"));

        Assert.Equal(12, (await api.AllEventsAsync(type: "node.*")).Length);
        Assert.Equal(12, (await api.AllEventsAsync(type: "node.registered")).Length);
        Assert.Single(await api.AllEventsAsync(type: "key."));
        var one = Assert.Single(await api.AllEventsAsync(node: nodes[7].Str("id")));
        Assert.Equal("n7", one.GetProperty("data").Str("hostname"));
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task Bad_cursors_limits_types_and_node_ids_are_refused_with_their_code(Transport transport)
    {
        var api = Gateway.Over(transport);
        foreach (var (since, type, node, limit, code) in new (string?, string?, string?, int?, string)[]
        {
            ("abc", null, null, null, "invalid_cursor"),
            ("-1", null, null, null, "invalid_cursor"),
            ("99999999999999999999", null, null, null, "invalid_cursor"),
            (null, null, null, 5000, "invalid_limit"),
            (null, null, null, -3, "invalid_limit"),
            (null, "node.exploded", null, null, "unknown_event_type"),
            (null, "bogus.*", null, null, "unknown_event_type"),
            (null, null, "not a node", null, "invalid_node_id"),
        })
        {
            var reply = await api.TryListEventsAsync(since, type, node, limit);
            Assert.True((reply.Status, reply.Code) == (HttpStatusCode.BadRequest, code), $"{since}/{type}/{node}/{limit}: {reply.Status} {reply.Code}");
        }

        var badTailnet = await api.TryListEventsAsync(tailnet: "Not_A_Tailnet");
        Assert.Equal(HttpStatusCode.BadRequest, badTailnet.Status);
    }

    private static string? NodeOf(JsonElement e) => e.TryGetProperty("node", out var node) && node.ValueKind == JsonValueKind.String ? node.GetString() : null;

    /// <summary>The id part of a full auth key string (<c>eo-auth-&lt;id&gt;-&lt;secret&gt;</c>).</summary>
    private static string KeyId(string key) => key.Split('-')[2];
}
