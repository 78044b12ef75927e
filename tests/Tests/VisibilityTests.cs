using System.Net;
using System.Text.Json;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>Netmaps under a policy, over HTTP and gRPC: only peers the policy lets a node reach or be reached by, its
/// packet filter, approval hiding a node, policy changes sending what was gained and lost, presence as patches, and
/// churn that reaches only the streams that can see it.</summary>
public sealed class VisibilityTests : GatewayTest
{
    private static readonly TimeSpan Within = TimeSpan.FromSeconds(15);

    private const string CiOnly = """{"tagOwners":{"tag:ci":[]},"acls":[{"action":"accept","src":["tag:ci"],"dst":["tag:ci:*"]}]}""";

    private static string Tailnet(string name, Transport transport) => $"{name}-{transport.ToString().ToLowerInvariant()}";

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task A_hundred_ci_nodes_join_and_leave_without_a_byte_to_ten_untagged_nodes_that_cannot_see_them(Transport transport)
    {
        var api = Gateway.Over(transport);
        var tailnet = Tailnet("seed", transport);
        Assert.Equal(HttpStatusCode.OK, (await api.SetPolicyAsync(CiOnly, tailnet)).Status);
        var officeKey = (await api.CreateKeyAsync(reusable: true, ephemeral: false, tailnet: tailnet)).Str("key");
        var ciKey = (await api.CreateKeyAsync(reusable: true, ephemeral: true, tags: ["tag:ci"], tailnet: tailnet)).Str("key");

        var office = new List<MapReader>();
        for (var i = 0; i < 10; i++)
        {
            var (_, token) = await api.RegisterAsync(officeKey, hostname: $"office-{i}");
            var map = await api.OpenMapAsync(token);
            office.Add(map);
            var full = await map.WaitForAsync(m => m.Type() == "full", Within, "an office node's full map");
            Assert.Empty(full.Ids("peers"));
            Assert.Equal(0, full.GetProperty("packetFilter").GetArrayLength());
        }

        var (_, watcherToken) = await api.RegisterAsync(ciKey, hostname: "ci-watcher");
        await using var watcher = await api.OpenMapAsync(watcherToken);
        var watcherFull = await watcher.WaitForAsync(m => m.Type() == "full", Within, "the watcher's full map");
        var filter = Assert.Single(watcherFull.GetProperty("packetFilter").EnumerateArray());
        Assert.Equal(["tag:ci"], filter.GetProperty("sources").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal("*", filter.Str("ports"));

        // The churn: 100 ephemeral CI nodes join, then leave; the CI watcher sees all of it.
        var joined = await Task.WhenAll(Enumerable.Range(0, 100).Select(i => api.RegisterAsync(ciKey, hostname: $"ci-{i}")));
        var ids = joined.Select(j => j.Node.Str("id")).ToHashSet();
        var seen = new HashSet<string>();
        await watcher.WaitForAsync(m =>
        {
            seen.UnionWith(m.Ids("peersChanged").Where(ids.Contains));
            return seen.Count == ids.Count;
        }, Within, "every CI node's arrival on the watcher's stream");
        await Task.WhenAll(joined.Select(async j => Assert.Equal(HttpStatusCode.NoContent, await api.LogoutAsync(j.Token))));
        var gone = new HashSet<string>();
        await watcher.WaitForAsync(m =>
        {
            gone.UnionWith(m.Ids("peersRemoved").Where(ids.Contains));
            return gone.Count == ids.Count;
        }, Within, "every CI node's departure on the watcher's stream");

        // ...and the office streams got nothing but keepalives, then and since.
        foreach (var map in office)
        {
            var messages = await map.CollectAsync(TimeSpan.FromSeconds(1.5));
            Assert.All(messages, m => Assert.Equal("keepalive", m.Type()));
            await map.DisposeAsync();
        }
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task A_node_sees_what_it_may_reach_and_what_may_reach_it_and_gets_its_packet_filter(Transport transport)
    {
        var api = Gateway.Over(transport);
        var tailnet = Tailnet("tiers", transport);
        const string policy = """{"acls":[{"action":"accept","src":["tag:web"],"dst":["tag:db:5432"]},{"action":"accept","src":["100.64.0.0/10"],"dst":["tag:web:443"]}]}""";
        Assert.Equal(HttpStatusCode.OK, (await api.SetPolicyAsync(policy, tailnet)).Status);
        async Task<(JsonElement Node, string Token)> Register(string tag, string host) =>
            await api.RegisterAsync((await api.CreateKeyAsync(tags: [tag], tailnet: tailnet)).Str("key"), hostname: host);
        var (web, webToken) = await Register("tag:web", "web");
        var (db, dbToken) = await Register("tag:db", "db");
        var (other, otherToken) = await Register("tag:other", "other");

        async Task<JsonElement> Full(string token)
        {
            await using var map = await api.OpenMapAsync(token);
            return await map.WaitForAsync(m => m.Type() == "full", Within, "a full map");
        }

        var webMap = await Full(webToken);
        var dbMap = await Full(dbToken);
        var otherMap = await Full(otherToken);
        // Every node's address is in 100.64.0.0/10, so everyone may reach web on 443; only web reaches db.
        Assert.Equal(new[] { db.Str("id"), other.Str("id") }.Order(), webMap.Ids("peers").Order());
        Assert.Equal([web.Str("id")], dbMap.Ids("peers"));
        Assert.Equal([web.Str("id")], otherMap.Ids("peers"));

        var dbFilter = Assert.Single(dbMap.GetProperty("packetFilter").EnumerateArray());
        Assert.Equal(["tag:web"], dbFilter.GetProperty("sources").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal("5432", dbFilter.Str("ports"));
        var webFilter = Assert.Single(webMap.GetProperty("packetFilter").EnumerateArray());
        Assert.Equal(["100.64.0.0/10"], webFilter.GetProperty("sources").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(0, otherMap.GetProperty("packetFilter").GetArrayLength());
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task An_unapproved_node_is_alone_and_invisible_until_approved_then_both_sides_get_it(Transport transport)
    {
        var api = Gateway.Over(transport);
        var tailnet = Tailnet("approval", transport);
        Assert.Equal(HttpStatusCode.OK, (await Gateway.Admin.PatchAsync($"/api/v1/tailnets/{tailnet}/settings",
            JsonContent("""{"deviceApproval":true}"""))).StatusCode);
        var (known, knownToken) = await api.RegisterAsync((await api.CreateKeyAsync(tailnet: tailnet)).Str("key"), hostname: "known");
        await using var knownMap = await api.OpenMapAsync(knownToken);
        await knownMap.WaitForAsync(m => m.Type() == "full", Within, "the approved node's full map");

        var (pending, pendingToken) = await api.RegisterAsync((await api.CreateKeyAsync(preauthorized: false, tailnet: tailnet)).Str("key"), hostname: "pending");
        Assert.False(pending.GetProperty("authorized").GetBoolean());
        await using var pendingMap = await api.OpenMapAsync(pendingToken);
        var alone = await pendingMap.WaitForAsync(m => m.Type() == "full", Within, "the pending node's full map");
        Assert.Empty(alone.Ids("peers"));
        Assert.All(await knownMap.CollectAsync(TimeSpan.FromSeconds(1.5)), m => Assert.Equal("keepalive", m.Type()));

        Assert.Equal(HttpStatusCode.OK, (await api.ApproveNodeAsync(pending.Str("id"), tailnet)).Status);
        await knownMap.WaitForAsync(m => m.Type() == "delta" && m.Ids("peersChanged").Contains(pending.Str("id")), Within, "the approved node on the other's stream");
        var welcome = await pendingMap.WaitForAsync(m => m.Type() == "full", Within, "a new full map for the approved node");
        Assert.Equal([known.Str("id")], welcome.Ids("peers"));
        Assert.True(welcome.GetProperty("self").GetProperty("authorized").GetBoolean());
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task A_policy_change_sends_removals_to_those_who_lose_peers_and_peers_to_those_who_gain_them(Transport transport)
    {
        var api = Gateway.Over(transport);
        var tailnet = Tailnet("change", transport);
        var ciKey = (await api.CreateKeyAsync(tags: ["tag:ci"], tailnet: tailnet)).Str("key");
        var (ci1, ci1Token) = await api.RegisterAsync(ciKey, hostname: "ci-1");
        var (ci2, _) = await api.RegisterAsync(ciKey, hostname: "ci-2");
        var (laptop, laptopToken) = await api.RegisterAsync((await api.CreateKeyAsync(tailnet: tailnet)).Str("key"), hostname: "laptop");
        await using var ciMap = await api.OpenMapAsync(ci1Token);
        await using var laptopMap = await api.OpenMapAsync(laptopToken);
        Assert.Equal(2, (await ciMap.WaitForAsync(m => m.Type() == "full", Within, "ci-1's full map")).Ids("peers").Length);
        Assert.Equal(2, (await laptopMap.WaitForAsync(m => m.Type() == "full", Within, "the laptop's full map")).Ids("peers").Length);

        Assert.Equal(HttpStatusCode.OK, (await api.SetPolicyAsync(CiOnly, tailnet)).Status);
        var lost = await laptopMap.WaitForAsync(m => m.Type() == "delta" && m.Ids("peersRemoved").Length > 0, Within, "the laptop's removals");
        Assert.Equal(new[] { ci1.Str("id"), ci2.Str("id") }.Order(), lost.Ids("peersRemoved").Order());
        // A delta that carries a filter (over gRPC, one without it reads "packetFilter": null, and a presence patch of the
        // laptop can come first).
        var ciLost = await ciMap.WaitForAsync(m => m.Type() == "delta" && m.TryGetProperty("packetFilter", out var filter) && filter.ValueKind == JsonValueKind.Array,
            Within, "ci-1's new filter");
        Assert.Equal([laptop.Str("id")], ciLost.Ids("peersRemoved"));
        Assert.Equal("tag:ci", ciLost.GetProperty("packetFilter")[0].GetProperty("sources")[0].GetString());

        Assert.Equal(HttpStatusCode.OK, (await api.SetPolicyAsync("""{"acls":[{"action":"accept","src":["*"],"dst":["*:*"]}]}""", tailnet)).Status);
        var gained = await laptopMap.WaitForAsync(m => m.Type() == "delta" && m.Ids("peersChanged").Length > 0, Within, "the laptop's regained peers");
        Assert.Equal(new[] { ci1.Str("id"), ci2.Str("id") }.Order(), gained.Ids("peersChanged").Order());
        Assert.Equal(0, gained.GetProperty("peersRemoved").GetArrayLength());
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task Coming_online_and_going_offline_reach_peers_as_small_patches(Transport transport)
    {
        var api = Gateway.Over(transport);
        var tailnet = Tailnet("presence", transport);
        var key = (await api.CreateKeyAsync(ephemeral: false, tailnet: tailnet)).Str("key");
        var (_, watcherToken) = await api.RegisterAsync(key, hostname: "watcher");
        var (mover, moverToken) = await api.RegisterAsync(key, hostname: "mover");
        await using var watcher = await api.OpenMapAsync(watcherToken);
        await watcher.WaitForAsync(m => m.Type() == "full" && m.Ids("peers").Contains(mover.Str("id")), Within, "the watcher's full map");

        var moverMap = await api.OpenMapAsync(moverToken);
        var online = await watcher.WaitForAsync(m => m.Type() == "delta" && Patch(m, mover.Str("id")) is not null, Within, "mover online");
        Assert.True(Patch(online, mover.Str("id"))!.Value.GetProperty("online").GetBoolean());
        Assert.DoesNotContain(mover.Str("id"), online.Ids("peersChanged"));

        await moverMap.DisposeAsync();
        var offline = await watcher.WaitForAsync(m => m.Type() == "delta" && Patch(m, mover.Str("id")) is { } p && !p.GetProperty("online").GetBoolean(),
            Within, "mover offline");
        Assert.Equal(JsonValueKind.String, Patch(offline, mover.Str("id"))!.Value.GetProperty("lastSeen").ValueKind);
    }

    private static JsonElement? Patch(JsonElement delta, string id) =>
        delta.TryGetProperty("peersChangedPatch", out var patches) ? patches.EnumerateArray().FirstOrDefault(p => p.Str("id") == id) is { ValueKind: JsonValueKind.Object } p ? p : null : null;

    private static StringContent JsonContent(string json) => new(json, System.Text.Encoding.UTF8, "application/json");
}
