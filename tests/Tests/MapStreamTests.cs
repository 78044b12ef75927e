using System.Net;
using System.Net.Http.Headers;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>The netmap stream end to end over a real socket: full map, deltas, keepalives and the ways a stream ends.</summary>
public sealed class MapStreamTests : GatewayTest
{
    private static readonly TimeSpan Within = TimeSpan.FromSeconds(10);
    [Fact]
    public async Task Three_nodes_see_each_other_logout_sends_a_removal_and_admin_delete_closes_the_stream()
    {
        var key = (await Gateway.CreateKeyAsync(reusable: true, ephemeral: true)).Str("key");
        var (a, tokenA) = await Gateway.RegisterAsync(key, hostname: "alpha");
        var (b, tokenB) = await Gateway.RegisterAsync(key, hostname: "bravo");
        var (c, tokenC) = await Gateway.RegisterAsync(key, hostname: "charlie");

        await using var mapA = await Gateway.OpenMapAsync(tokenA);
        var full = await mapA.WaitForAsync(m => m.Type() == "full", Within, "A's full map");
        Assert.Equal(a.Str("id"), full.GetProperty("self").Str("id"));
        Assert.Equal(new[] { b.Str("id"), c.Str("id") }.Order(), full.Ids("peers").Order());
        var peerB = full.GetProperty("peers").EnumerateArray().Single(p => p.Str("id") == b.Str("id"));
        Assert.Equal(b.Str("ipv4"), peerB.Str("ipv4"));
        Assert.Equal("bravo", peerB.Str("name"));

        await using var mapB = await Gateway.OpenMapAsync(tokenB);
        await mapB.WaitForAsync(m => m.Type() == "full", Within, "B's full map");

        Assert.Equal(HttpStatusCode.NoContent, await Gateway.LogoutAsync(tokenC));
        var removal = await mapA.WaitForAsync(m => m.Type() == "delta" && m.Ids("peersRemoved").Contains(c.Str("id")), Within, "C's removal on A's stream");
        Assert.True(removal.GetProperty("version").GetInt64() > full.GetProperty("version").GetInt64());

        var delete = await Gateway.Admin.DeleteAsync($"/api/v1/tailnets/-/nodes/{b.Str("id")}");
        Assert.Equal(HttpStatusCode.NoContent, delete.StatusCode);
        await mapB.WaitForEndAsync(Within);
        await mapA.WaitForAsync(m => m.Type() == "delta" && m.Ids("peersRemoved").Contains(b.Str("id")), Within, "B's removal on A's stream");

        Assert.Equal([a.Str("id")], (await Gateway.ListNodesAsync()).Select(n => n.Str("id")));
    }

    [Fact]
    public async Task A_new_peer_arrives_as_a_delta_and_the_node_shows_online_while_streaming()
    {
        var key = (await Gateway.CreateKeyAsync()).Str("key");
        var (a, tokenA) = await Gateway.RegisterAsync(key, hostname: "watcher");
        await using var map = await Gateway.OpenMapAsync(tokenA);
        await map.WaitForAsync(m => m.Type() == "full", Within, "full map");

        var (b, _) = await Gateway.RegisterAsync(key, hostname: "newcomer");
        var delta = await map.WaitForAsync(m => m.Type() == "delta" && m.Ids("peersChanged").Contains(b.Str("id")), Within, "the newcomer");
        var added = delta.GetProperty("peersChanged").EnumerateArray().Single(p => p.Str("id") == b.Str("id"));
        Assert.Equal(b.Str("ipv4"), added.Str("ipv4"));

        var self = await Gateway.GetNodeAsync(a.Str("id"));
        Assert.True(self!.Value.GetProperty("online").GetBoolean());
        Assert.False((await Gateway.GetNodeAsync(b.Str("id")))!.Value.GetProperty("online").GetBoolean());
    }

    [Fact]
    public async Task A_silent_stream_gets_keepalives()
    {
        var key = (await Gateway.CreateKeyAsync()).Str("key");
        var (_, token) = await Gateway.RegisterAsync(key);
        await using var map = await Gateway.OpenMapAsync(token);
        await map.WaitForAsync(m => m.Type() == "full", Within, "full map");
        // Map:KeepAliveInterval is 1 s in these tests.
        await map.WaitForAsync(m => m.Type() == "keepalive", TimeSpan.FromSeconds(5), "a keepalive");
    }

    [Fact]
    public async Task Registering_the_same_node_key_again_returns_the_same_node_and_voids_the_old_token()
    {
        var key = (await Gateway.CreateKeyAsync(ephemeral: false)).Str("key");
        var nodeKey = TestGateway.NewNodeKey();
        var (first, oldToken) = await Gateway.RegisterAsync(key, nodeKey, "laptop");
        await using var oldStream = await Gateway.OpenMapAsync(oldToken);
        await oldStream.WaitForAsync(m => m.Type() == "full", Within, "full map");

        var (second, newToken) = await Gateway.RegisterAsync(key, nodeKey.ToUpperInvariant().Replace("NODEKEY:", "nodekey:"), "laptop");
        Assert.Equal(first.Str("id"), second.Str("id"));
        Assert.Equal(first.Str("ipv4"), second.Str("ipv4"));
        Assert.Equal(first.Str("name"), second.Str("name"));
        Assert.NotEqual(oldToken, newToken);
        Assert.Single(await Gateway.ListNodesAsync(), n => n.Str("nodeKey") == nodeKey);

        await oldStream.WaitForEndAsync(Within);
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/machine/map");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", oldToken);
        Assert.Equal(HttpStatusCode.Unauthorized, (await Gateway.Http.SendAsync(request)).StatusCode);
        await using var newStream = await Gateway.OpenMapAsync(newToken);
        await newStream.WaitForAsync(m => m.Type() == "full", Within, "full map on the new token");
    }

    [Fact]
    public async Task A_non_ephemeral_node_that_logs_out_stays_listed_as_logged_out_and_its_stream_ends()
    {
        var key = (await Gateway.CreateKeyAsync(ephemeral: false)).Str("key");
        var (node, token) = await Gateway.RegisterAsync(key, hostname: "server");
        await using var map = await Gateway.OpenMapAsync(token);
        await map.WaitForAsync(m => m.Type() == "full", Within, "full map");

        Assert.Equal(HttpStatusCode.NoContent, await Gateway.LogoutAsync(token));
        await map.WaitForEndAsync(Within);
        var listed = await Gateway.GetNodeAsync(node.Str("id"));
        Assert.True(listed!.Value.GetProperty("loggedOut").GetBoolean());
        Assert.False(listed.Value.GetProperty("online").GetBoolean());
        Assert.Equal(HttpStatusCode.Unauthorized, await Gateway.LogoutAsync(token));
    }
}
