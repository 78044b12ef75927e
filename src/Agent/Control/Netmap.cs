using System.Collections.Immutable;
using System.Net;
using EphemeralOrleans.Protocol;
using EphemeralOrleans.Protocol.V1;

namespace EphemeralOrleans.Agent.Control;

/// <summary>A node of the netmap with what the data plane needs parsed once: its addresses and its WireGuard key.</summary>
public sealed record NetmapNode(Node Wire, IPAddress Ipv4, IPAddress Ipv6, ImmutableArray<byte> PublicKey)
{
    public string Id => Wire.Id;

    public string Name => Wire.Name;

    /// <summary>Null when the gateway sent something that is no node (bad address or key): such a peer is left out.</summary>
    public static NetmapNode? TryParse(Node wire) =>
        IPAddress.TryParse(wire.Ipv4, out var ipv4) && IPAddress.TryParse(wire.Ipv6, out var ipv6)
        && KeyText.TryParse(wire.NodeKey, KeyText.NodeKeyPrefix, out var key)
            ? new NetmapNode(wire, ipv4, ipv6, [.. key])
            : null;

    /// <summary>A node as the agent prints it in JSON: the API's field names.</summary>
    public Dictionary<string, object?> Describe() => Describe(Wire);

    public static Dictionary<string, object?> Describe(Node node) => new()
    {
        ["id"] = node.Id,
        ["name"] = node.Name,
        ["hostname"] = node.Hostname,
        ["ipv4"] = node.Ipv4,
        ["ipv6"] = node.Ipv6,
        ["ephemeral"] = node.Ephemeral,
        ["tags"] = node.Tags.ToArray(),
        ["online"] = node.Online,
        ["authorized"] = node.Authorized,
        ["lastSeen"] = node.LastSeen?.ToDateTimeOffset(),
        ["endpoints"] = node.Endpoints.ToArray(),
        ["allowedIps"] = node.AllowedIps.ToArray(),
    };
}

/// <summary>The agent's view of its tailnet at one moment: immutable, so readers (the local API, the data plane)
/// never lock and never see a half-applied message.</summary>
public sealed record NetmapSnapshot(
    Node Self,
    ImmutableDictionary<string, NetmapNode> Peers,
    ImmutableArray<PacketFilterRule> PacketFilter,
    long Version,
    bool Connected)
{
    /// <summary>Before the first map: only the node as registration returned it.</summary>
    public static NetmapSnapshot Initial(Node self) =>
        new(self, ImmutableDictionary<string, NetmapNode>.Empty.WithComparers(StringComparer.Ordinal), [], 0, Connected: false);

    public NetmapNode[] PeersByName() => [.. Peers.Values.OrderBy(p => p.Name, StringComparer.Ordinal)];

    /// <summary>The next snapshot after <paramref name="message"/>; a delta changes only what it names.</summary>
    public NetmapSnapshot Apply(MapResponse message)
    {
        switch (message.MessageCase)
        {
            case MapResponse.MessageOneofCase.Full:
                var full = message.Full;
                var peers = ImmutableDictionary.CreateBuilder<string, NetmapNode>(StringComparer.Ordinal);
                foreach (var peer in full.Peers)
                {
                    if (NetmapNode.TryParse(peer) is { } node)
                    {
                        peers[node.Id] = node;
                    }
                }

                return new NetmapSnapshot(full.Self, peers.ToImmutable(), [.. full.PacketFilter], full.Version, Connected: true);
            case MapResponse.MessageOneofCase.Delta:
                var delta = message.Delta;
                var changed = Peers.ToBuilder();
                foreach (var peer in delta.PeersChanged)
                {
                    if (NetmapNode.TryParse(peer) is { } node)
                    {
                        changed[node.Id] = node;
                    }
                }

                changed.RemoveRange(delta.PeersRemoved);
                foreach (var patch in delta.PeersChangedPatch)
                {
                    if (changed.TryGetValue(patch.Id, out var known))
                    {
                        var wire = known.Wire.Clone();
                        wire.Online = patch.Online;
                        wire.LastSeen = patch.LastSeen;
                        changed[patch.Id] = known with { Wire = wire };
                    }
                }

                return this with
                {
                    Self = delta.Self ?? Self,
                    Peers = changed.ToImmutable(),
                    PacketFilter = delta.PacketFilter is { } filter ? [.. filter.Rules] : PacketFilter,
                    Version = delta.Version,
                };
            default:
                return this;
        }
    }

    /// <summary><c>status</c>: connected, addresses, peer count, every peer (name, addresses, tags, online or last
    /// seen), and the WireGuard device as it reports itself (null for control only).</summary>
    public object Status(string loginServer, object? wireguard) => new
    {
        connected = Connected,
        loginServer,
        node = NetmapNode.Describe(Self),
        addresses = new[] { Self.Ipv4, Self.Ipv6 },
        peers = Peers.Count,
        peerStatus = PeersByName().Select(p => new
        {
            id = p.Id,
            name = p.Name,
            ipv4 = p.Wire.Ipv4,
            ipv6 = p.Wire.Ipv6,
            tags = p.Wire.Tags.ToArray(),
            online = p.Wire.Online,
            lastSeen = p.Wire.LastSeen?.ToDateTimeOffset(),
        }).ToArray(),
        version = Version,
        wireguard,
    };

    /// <summary><c>netmap</c>: the node, every peer, and what may reach the node.</summary>
    public object Map() => new
    {
        self = NetmapNode.Describe(Self),
        peers = PeersByName().Select(p => p.Describe()).ToArray(),
        packetFilter = PacketFilter.Select(r => new { sources = r.Sources.ToArray(), ports = r.Ports }).ToArray(),
        version = Version,
    };
}
