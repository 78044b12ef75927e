using System.Collections.Immutable;
using System.Net;
using System.Net.Sockets;
using EphemeralOrleans.Agent.Control;
using Wire = EphemeralOrleans.Protocol.V1;

namespace EphemeralOrleans.Agent.Dataplane;

/// <summary>One WireGuard peer: its key, where to send to it, what to route to it, and its keepalive interval in
/// seconds (0: none).</summary>
public sealed record PeerConfig(string NodeId, string Name, string PublicKeyHex, IPEndPoint? Endpoint, ImmutableArray<IPNetwork> AllowedIps, int Keepalive)
{
    public bool Equals(PeerConfig? other) =>
        other is not null && NodeId == other.NodeId && Name == other.Name && PublicKeyHex == other.PublicKeyHex
        && Equals(Endpoint, other.Endpoint) && AllowedIps.SequenceEqual(other.AllowedIps) && Keepalive == other.Keepalive;

    public override int GetHashCode() => HashCode.Combine(NodeId, PublicKeyHex, Endpoint);
}

/// <summary>What the data plane should look like for one netmap: the device's addresses, the routes into it, its
/// peers by public key, and its packet filter (an nft script). Compiled from a <see cref="NetmapSnapshot"/> by
/// <see cref="ConfigCompiler"/>.</summary>
public sealed record DataplaneConfig(ImmutableArray<IPNetwork> Addresses, ImmutableArray<IPNetwork> Routes, ImmutableDictionary<string, PeerConfig> Peers, string Filter)
{
    public bool Equals(DataplaneConfig? other) =>
        other is not null && Addresses.SequenceEqual(other.Addresses) && Routes.SequenceEqual(other.Routes) && Filter == other.Filter
        && Peers.Count == other.Peers.Count && Peers.All(p => other.Peers.TryGetValue(p.Key, out var q) && p.Value.Equals(q));

    public override int GetHashCode() => HashCode.Combine(Addresses.Length, Peers.Count);
}

/// <summary>
/// Netmap → data-plane configuration, with no side effects (the shape of Tailscale's <c>wgcfg/nmcfg</c>): the node's
/// own addresses as /32 and /128, the tailnet's ranges routed into the device, one WireGuard peer per peer of the
/// map, allowed exactly its own two addresses, and the packet filter (<see cref="FilterCompiler"/>). Online peers
/// (an agent is up) get keepalives: turning them on makes WireGuard start a handshake at once, from both sides of a
/// new pair — whichever side learns of the other last gets through, so neither waits out WireGuard's 5 s retry of a
/// first handshake that arrived before the other knew it (and when both start within a round trip, the
/// <see cref="HandshakeWatch"/> breaks the tie). Offline peers get none: a large idle tailnet costs nothing. Of a
/// peer's endpoints one is chosen: one in a subnet this machine is on, else the first IPv4, else the first; WireGuard
/// roaming corrects it once the peer sends from elsewhere.
/// </summary>
public static class ConfigCompiler
{
    public static readonly ImmutableArray<IPNetwork> TailnetRoutes = [IPNetwork.Parse("100.64.0.0/10"), IPNetwork.Parse("fd7a:115c:a1e0::/48")];

    /// <summary>Seconds between keepalives to an online peer (Tailscale's figure, also right for NAT mappings).</summary>
    public const int KeepaliveSeconds = 25;

    public static DataplaneConfig Compile(string device, NetmapSnapshot netmap, IReadOnlyCollection<IPNetwork> localSubnets)
    {
        var peers = ImmutableDictionary.CreateBuilder<string, PeerConfig>(StringComparer.Ordinal);
        foreach (var peer in netmap.Peers.Values)
        {
            var config = Peer(peer, localSubnets);
            peers[config.PublicKeyHex] = config;
        }

        return new DataplaneConfig(Addresses(netmap.Self), TailnetRoutes, peers.ToImmutable(), FilterCompiler.Compile(device, netmap.PacketFilter, netmap.Peers.Values));
    }

    /// <summary>The node's own addresses on the device: its IPv4 as /32, its IPv6 as /128.</summary>
    public static ImmutableArray<IPNetwork> Addresses(Wire.Node self) =>
        IPAddress.TryParse(self.Ipv4, out var v4) && IPAddress.TryParse(self.Ipv6, out var v6)
            ? [new IPNetwork(v4, 32), new IPNetwork(v6, 128)]
            : [];

    /// <summary>One peer's configuration: a delta recompiles only the peers it names.</summary>
    public static PeerConfig Peer(NetmapNode peer, IReadOnlyCollection<IPNetwork> localSubnets)
    {
        var key = Convert.ToHexStringLower(peer.PublicKey.AsSpan());
        return new PeerConfig(peer.Id, peer.Name, key, ChooseEndpoint(peer, localSubnets), [new IPNetwork(peer.Ipv4, 32), new IPNetwork(peer.Ipv6, 128)],
            peer.Wire.Online ? KeepaliveSeconds : 0);
    }

    private static IPEndPoint? ChooseEndpoint(NetmapNode peer, IReadOnlyCollection<IPNetwork> localSubnets)
    {
        var endpoints = peer.Wire.Endpoints.Select(e => IPEndPoint.TryParse(e, out var endpoint) && endpoint.Port != 0 ? endpoint : null).OfType<IPEndPoint>().ToArray();
        return endpoints.FirstOrDefault(e => localSubnets.Any(s => s.Contains(e.Address)))
            ?? endpoints.FirstOrDefault(e => e.AddressFamily == AddressFamily.InterNetwork)
            ?? endpoints.FirstOrDefault();
    }
}
