using System.Net;
using System.Text.Json;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>WireGuard endpoints in the netmap: a node reports where it listens, the peers that see it get that in a
/// delta (and in full maps), with its allowed IPs; bad endpoints are refused and change nothing.</summary>
public sealed class EndpointTests : GatewayTest
{
    private static readonly TimeSpan Within = TimeSpan.FromSeconds(10);

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task Endpoints_reach_the_peers_that_see_the_node_as_a_delta_and_no_one_else(Transport transport)
    {
        var api = Gateway.Over(transport);
        var tailnet = $"endpoints-{transport}".ToLowerInvariant();
        Assert.Equal(HttpStatusCode.OK, (await api.SetPolicyAsync("""
            {"acls":[{"action":"accept","src":["tag:a"],"dst":["tag:b:*"]}]}
            """, tailnet)).Status);
        var (a, tokenA) = await api.RegisterAsync((await api.CreateKeyAsync(ephemeral: false, tags: ["tag:a"], tailnet: tailnet)).Str("key"), hostname: "a");
        var (b, tokenB) = await api.RegisterAsync((await api.CreateKeyAsync(ephemeral: false, tags: ["tag:b"], tailnet: tailnet)).Str("key"), hostname: "b");
        var (_, tokenC) = await api.RegisterAsync((await api.CreateKeyAsync(ephemeral: false, tags: ["tag:c"], tailnet: tailnet)).Str("key"), hostname: "c");
        await using var mapA = await api.OpenMapAsync(tokenA);
        var fullA = await mapA.WaitForAsync(m => m.Type() == "full", Within, "A's full map");
        Assert.Empty(Peer(fullA, "peers", b.Str("id")).GetProperty("endpoints").EnumerateArray());
        await using var mapC = await api.OpenMapAsync(tokenC);
        await mapC.WaitForAsync(m => m.Type() == "full", Within, "C's full map");

        var set = await api.SetEndpointsAsync(tokenB, "198.18.0.2:41641", "[2001:db8::2]:41641", "198.18.0.2:41641", "[::ffff:198.18.0.3]:41641");
        Assert.Equal(HttpStatusCode.OK, set.Status);
        string[] expected = ["198.18.0.2:41641", "[2001:db8::2]:41641", "198.18.0.3:41641"];
        Assert.Equal(expected, Endpoints(set.Body.GetProperty("node")));

        // B's registration may still reach A as a delta of its own (its batch window), without endpoints: wait for these.
        var delta = await mapA.WaitForAsync(m => m.Type() == "delta" && m.GetProperty("peersChanged").EnumerateArray()
            .Any(p => p.Str("id") == b.Str("id") && Endpoints(p).Length > 0), Within, "B's endpoints on A's stream");
        var peer = Peer(delta, "peersChanged", b.Str("id"));
        Assert.Equal(expected, Endpoints(peer));
        Assert.Equal([$"{b.Str("ipv4")}/32", $"{b.Str("ipv6")}/128"], peer.GetProperty("allowedIps").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(b.Str("nodeKey"), peer.Str("nodeKey"));

        // C sees neither A nor B: not a byte about B's endpoints reaches it (keepalives only, every second here).
        Assert.All(await mapC.CollectAsync(TimeSpan.FromSeconds(1.5)), m => Assert.Equal("keepalive", m.Type()));

        // Full maps carry them too; setting the same set again sends nothing new.
        await using var second = await api.OpenMapAsync(tokenA);
        var fresh = await second.WaitForAsync(m => m.Type() == "full", Within, "a new full map");
        Assert.True(expected.SequenceEqual(Endpoints(Peer(fresh, "peers", b.Str("id")))), fresh.ToString());
        Assert.Equal(HttpStatusCode.OK, (await api.SetEndpointsAsync(tokenB, expected)).Status);
        Assert.All(await second.CollectAsync(TimeSpan.FromSeconds(1.5)), m => Assert.Equal("keepalive", m.Type()));
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task Bad_endpoints_are_refused_with_the_reason_and_change_nothing(Transport transport)
    {
        var api = Gateway.Over(transport);
        var (node, token) = await api.RegisterAsync((await api.CreateKeyAsync(ephemeral: false)).Str("key"), hostname: "n");
        Assert.Equal(HttpStatusCode.OK, (await api.SetEndpointsAsync(token, "198.18.0.9:51820")).Status);

        string[][] bad =
        [
            ["198.18.0.9"], ["198.18.0.9:0"], ["198.18.0.9:65536"], ["198.18.0.9:+80"], ["2001:db8::1:51820"], ["[2001:db8::1]"],
            ["localhost:51820"], ["127.0.0.1:51820"], ["[::1]:51820"], ["0.0.0.0:51820"], ["[::]:51820"], ["255.255.255.255:51820"],
            ["224.0.0.1:51820"], ["[ff02::1]:51820"], ["169.254.1.1:51820"], ["[fe80::1]:51820"], ["[fe80::1%2]:51820"],
            ["100.64.0.1:51820"], ["[fd7a:115c:a1e0::1]:51820"], ["198.18.0.9:51820\n"], [""],
            [.. Enumerable.Range(1, 17).Select(i => $"198.18.0.{i}:51820")],
        ];
        foreach (var endpoints in bad)
        {
            var reply = await api.SetEndpointsAsync(token, endpoints);
            Assert.True((reply.Status, reply.Code) == (HttpStatusCode.BadRequest, "invalid_endpoints"),
                $"{JsonSerializer.Serialize(endpoints)}: {reply.Status} {reply.Code}");
        }

        Assert.Equal(["198.18.0.9:51820"], Endpoints((await api.GetNodeAsync(node.Str("id")))!.Value));
        Assert.Equal((HttpStatusCode.Unauthorized, "invalid_token"), ((await api.SetEndpointsAsync(token + "x", "198.18.0.9:51820")) is var r ? (r.Status, r.Code) : default));
        // An empty list clears them.
        Assert.Empty(Endpoints((await api.SetEndpointsAsync(token)).Body.GetProperty("node")));
    }

    private static JsonElement Peer(JsonElement message, string property, string id) =>
        message.GetProperty(property).EnumerateArray().Single(p => p.Str("id") == id);

    private static string[] Endpoints(JsonElement node) => node.GetProperty("endpoints").EnumerateArray().Select(e => e.GetString()!).ToArray();
}
