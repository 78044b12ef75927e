extern alias agent;
using System.Collections.Immutable;
using System.Net;
using agent::EphemeralOrleans.Agent.Control;
using agent::EphemeralOrleans.Agent.Dataplane;
using Wire = agent::EphemeralOrleans.Protocol.V1;

namespace EphemeralOrleans.Tests;

/// <summary>The pure netmap → data-plane configuration step: addresses, routes, one peer per netmap peer with exactly
/// its own addresses, the endpoint a peer is dialled at, and what is left out.</summary>
public sealed class ConfigCompilerTests
{
    private static readonly string KeyB = new('b', 64);
    private static readonly string KeyC = new('c', 64);

    [Fact]
    public void A_netmap_compiles_to_the_nodes_addresses_the_tailnet_routes_and_one_peer_per_peer()
    {
        var netmap = Netmap(
            Node("b", "100.64.0.2", "fd7a:115c:a1e0::6440:2", KeyB, "203.0.113.9:41641", "198.18.5.2:41641"),
            Node("c", "100.64.0.3", "fd7a:115c:a1e0::6440:3", KeyC, "[2001:db8::3]:5000", "203.0.113.3:5000"));
        var config = ConfigCompiler.Compile("eo0", netmap, [IPNetwork.Parse("198.18.5.0/24")]);

        Assert.Equal(["100.64.0.1/32", "fd7a:115c:a1e0::6440:1/128"], config.Addresses.Select(a => a.ToString()));
        Assert.Equal(["100.64.0.0/10", "fd7a:115c:a1e0::/48"], config.Routes.Select(r => r.ToString()));
        Assert.Equal([KeyB, KeyC], config.Peers.Keys.Order());
        Assert.Equal(["100.64.0.2/32", "fd7a:115c:a1e0::6440:2/128"], config.Peers[KeyB].AllowedIps.Select(a => a.ToString()));
        // An endpoint on a subnet this machine is on beats the others; else the first IPv4.
        Assert.Equal(IPEndPoint.Parse("198.18.5.2:41641"), config.Peers[KeyB].Endpoint);
        Assert.Equal(IPEndPoint.Parse("203.0.113.3:5000"), config.Peers[KeyC].Endpoint);
    }

    [Fact]
    public void A_peer_without_endpoints_is_still_a_peer_and_one_with_a_bad_key_or_address_is_left_out()
    {
        var netmap = Netmap(
            Node("quiet", "100.64.0.2", "fd7a:115c:a1e0::6440:2", KeyB),
            Node("badkey", "100.64.0.3", "fd7a:115c:a1e0::6440:3", "xyz"),
            Node("badip", "not-an-ip", "fd7a:115c:a1e0::6440:4", KeyC));
        var config = ConfigCompiler.Compile("eo0", netmap, []);

        var peer = Assert.Single(config.Peers.Values);
        Assert.Equal("quiet", peer.Name);
        Assert.Null(peer.Endpoint);
    }

    [Fact]
    public void A_delta_changes_only_the_peers_it_names_and_equal_netmaps_compile_to_equal_configs()
    {
        var before = Netmap(Node("b", "100.64.0.2", "fd7a:115c:a1e0::6440:2", KeyB, "198.18.5.2:41641"));
        var moved = Node("b", "100.64.0.2", "fd7a:115c:a1e0::6440:2", KeyB, "198.18.5.9:41641");
        var after = before.Apply(new Wire.MapResponse { Delta = new Wire.MapDelta { Version = 2, PeersChanged = { moved } } });

        Assert.Equal(ConfigCompiler.Compile("eo0", before, []), ConfigCompiler.Compile("eo0", before, []));
        Assert.NotEqual(ConfigCompiler.Compile("eo0", before, []), ConfigCompiler.Compile("eo0", after, []));
        Assert.Equal(IPEndPoint.Parse("198.18.5.9:41641"), ConfigCompiler.Compile("eo0", after, []).Peers[KeyB].Endpoint);
        var removed = after.Apply(new Wire.MapResponse { Delta = new Wire.MapDelta { Version = 3, PeersRemoved = { "n-b" } } });
        Assert.Empty(ConfigCompiler.Compile("eo0", removed, []).Peers);
    }

    private static NetmapSnapshot Netmap(params Wire.Node[] peers) =>
        NetmapSnapshot.Initial(Node("self", "100.64.0.1", "fd7a:115c:a1e0::6440:1", new string('a', 64)))
            .Apply(new Wire.MapResponse
            {
                Full = new Wire.FullMap
                {
                    Version = 1,
                    Self = Node("self", "100.64.0.1", "fd7a:115c:a1e0::6440:1", new string('a', 64)),
                    Peers = { peers },
                },
            });

    private static Wire.Node Node(string name, string ipv4, string ipv6, string keyHex, params string[] endpoints) => new()
    {
        Id = $"n-{name}", Name = name, Ipv4 = ipv4, Ipv6 = ipv6, NodeKey = "nodekey:" + keyHex, Endpoints = { endpoints },
    };
}
