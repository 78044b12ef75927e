using System.Net;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>The netmap stream end to end over a real socket, HTTP and gRPC alike: full map, deltas, keepalives and the ways a stream ends.</summary>
public sealed class MapStreamTests : GatewayTest
{
    private static readonly TimeSpan Within = TimeSpan.FromSeconds(10);
    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task Three_nodes_see_each_other_logout_sends_a_removal_and_admin_delete_closes_the_stream(Transport transport)
    {
        var api = Gateway.Over(transport);
        var key = (await api.CreateKeyAsync(reusable: true, ephemeral: true)).Str("key");
        var (a, tokenA) = await api.RegisterAsync(key, hostname: "alpha");
        var (b, tokenB) = await api.RegisterAsync(key, hostname: "bravo");
        var (c, tokenC) = await api.RegisterAsync(key, hostname: "charlie");

        await using var mapA = await api.OpenMapAsync(tokenA);
        var full = await mapA.WaitForAsync(m => m.Type() == "full", Within, "A's full map");
        Assert.Equal(a.Str("id"), full.GetProperty("self").Str("id"));
        Assert.Equal(new[] { b.Str("id"), c.Str("id") }.Order(), full.Ids("peers").Order());
        var peerB = full.GetProperty("peers").EnumerateArray().Single(p => p.Str("id") == b.Str("id"));
        Assert.Equal(b.Str("ipv4"), peerB.Str("ipv4"));
        Assert.Equal("bravo", peerB.Str("name"));

        await using var mapB = await api.OpenMapAsync(tokenB);
        await mapB.WaitForAsync(m => m.Type() == "full", Within, "B's full map");

        Assert.Equal(HttpStatusCode.NoContent, await api.LogoutAsync(tokenC));
        var removal = await mapA.WaitForAsync(m => m.Type() == "delta" && m.Ids("peersRemoved").Contains(c.Str("id")), Within, "C's removal on A's stream");
        Assert.True(removal.GetProperty("version").GetInt64() > full.GetProperty("version").GetInt64());

        Assert.Equal(HttpStatusCode.NoContent, (await api.DeleteNodeAsync(b.Str("id"))).Status);
        await mapB.WaitForEndAsync(Within);
        await mapA.WaitForAsync(m => m.Type() == "delta" && m.Ids("peersRemoved").Contains(b.Str("id")), Within, "B's removal on A's stream");

        Assert.Equal([a.Str("id")], (await api.ListNodesAsync()).Select(n => n.Str("id")));
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task A_new_peer_arrives_as_a_delta_and_the_node_shows_online_while_streaming(Transport transport)
    {
        var api = Gateway.Over(transport);
        var key = (await api.CreateKeyAsync()).Str("key");
        var (a, tokenA) = await api.RegisterAsync(key, hostname: "watcher");
        await using var map = await api.OpenMapAsync(tokenA);
        await map.WaitForAsync(m => m.Type() == "full", Within, "full map");

        var (b, _) = await api.RegisterAsync(key, hostname: "newcomer");
        var delta = await map.WaitForAsync(m => m.Type() == "delta" && m.Ids("peersChanged").Contains(b.Str("id")), Within, "the newcomer");
        var added = delta.GetProperty("peersChanged").EnumerateArray().Single(p => p.Str("id") == b.Str("id"));
        Assert.Equal(b.Str("ipv4"), added.Str("ipv4"));

        var self = await api.GetNodeAsync(a.Str("id"));
        Assert.True(self!.Value.GetProperty("online").GetBoolean());
        Assert.False((await api.GetNodeAsync(b.Str("id")))!.Value.GetProperty("online").GetBoolean());
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task A_silent_stream_gets_keepalives(Transport transport)
    {
        var api = Gateway.Over(transport);
        var key = (await api.CreateKeyAsync()).Str("key");
        var (_, token) = await api.RegisterAsync(key);
        await using var map = await api.OpenMapAsync(token);
        await map.WaitForAsync(m => m.Type() == "full", Within, "full map");
        // Map:KeepAliveInterval is 1 s in these tests.
        await map.WaitForAsync(m => m.Type() == "keepalive", TimeSpan.FromSeconds(5), "a keepalive");
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task Registering_the_same_node_key_again_with_a_proof_returns_the_same_node_and_voids_the_old_token(Transport transport)
    {
        var api = Gateway.Over(transport);
        var key = (await api.CreateKeyAsync(ephemeral: false)).Str("key");
        var device = TestDevice.Create();
        var nodeKey = device.NodeKey;
        var (first, oldToken) = await api.RegisterAsync(key, nodeKey, "laptop");
        await using var oldStream = await api.OpenMapAsync(oldToken);
        await oldStream.WaitForAsync(m => m.Type() == "full", Within, "full map");

        var again = await api.TryRegisterAsync(key, nodeKey.ToUpperInvariant().Replace("NODEKEY:", "nodekey:"), "laptop",
            proof: device.Prove(await api.ControlKeyAsync(), key, "laptop"));
        Assert.True(again.Status == HttpStatusCode.OK, $"register again: {again.Status} {again.Code}");
        var (second, newToken) = (again.Body.GetProperty("node"), again.Body.Str("nodeToken"));
        Assert.Equal(first.Str("id"), second.Str("id"));
        Assert.Equal(first.Str("ipv4"), second.Str("ipv4"));
        Assert.Equal(first.Str("name"), second.Str("name"));
        Assert.NotEqual(oldToken, newToken);
        Assert.Single(await api.ListNodesAsync(), n => n.Str("nodeKey") == nodeKey);

        await oldStream.WaitForEndAsync(Within);
        var refused = await api.TryOpenMapAsync(oldToken);
        Assert.Equal((HttpStatusCode.Unauthorized, "invalid_token"), (refused.Status, refused.Code));
        await using var newStream = await api.OpenMapAsync(newToken);
        await newStream.WaitForAsync(m => m.Type() == "full", Within, "full map on the new token");
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task A_non_ephemeral_node_that_logs_out_stays_listed_as_logged_out_and_its_stream_ends(Transport transport)
    {
        var api = Gateway.Over(transport);
        var key = (await api.CreateKeyAsync(ephemeral: false)).Str("key");
        var (node, token) = await api.RegisterAsync(key, hostname: "server");
        await using var map = await api.OpenMapAsync(token);
        await map.WaitForAsync(m => m.Type() == "full", Within, "full map");

        Assert.Equal(HttpStatusCode.NoContent, await api.LogoutAsync(token));
        await map.WaitForEndAsync(Within);
        var listed = await api.GetNodeAsync(node.Str("id"));
        Assert.True(listed!.Value.GetProperty("loggedOut").GetBoolean());
        Assert.False(listed.Value.GetProperty("online").GetBoolean());
        Assert.Equal(HttpStatusCode.Unauthorized, await api.LogoutAsync(token));
    }
}
