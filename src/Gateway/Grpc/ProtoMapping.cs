using System.Runtime.CompilerServices;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Validation;
using EphemeralOrleans.Gateway.Map;
using EphemeralOrleans.Protocol.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using AuthKey = EphemeralOrleans.Protocol.V1.AuthKey;
using TrustPolicy = EphemeralOrleans.Protocol.V1.TrustPolicy;

namespace EphemeralOrleans.Gateway.Grpc;

/// <summary>The application's records as <c>ephemeral.v1</c> messages.</summary>
internal static class ProtoMapping
{
    private static readonly MapResponse KeepAliveResponse = new() { Keepalive = new KeepAlive() };

    /// <summary>Nodes appear in many maps (every full map of every peer): converted once per node version.</summary>
    private static readonly ConditionalWeakTable<NodeEntry, Node> NodeCache = new();

    public static Node ToProto(this NodeEntry node) => NodeCache.GetValue(node, Convert);

    private static Node Convert(NodeEntry entry)
    {
        var (node, presence) = (entry.Record, entry.Presence);
        var proto = new Node
        {
            Id = node.Id,
            Name = node.Name,
            Hostname = node.Hostname,
            NodeKey = node.NodeKey,
            Ipv4 = node.Ipv4.ToString(),
            Ipv6 = node.Ipv6.ToString(),
            Ephemeral = node.Ephemeral,
            Online = presence.Online,
            LastSeen = presence.LastSeen is { } lastSeen ? Timestamp.FromDateTimeOffset(lastSeen) : null,
            Created = Timestamp.FromDateTimeOffset(node.Created),
            Authorized = node.Authorized,
            LoggedOut = node.LoggedOut,
            KeyId = node.KeyId,
            Tailnet = node.Tailnet,
        };
        proto.Tags.AddRange(node.Tags);
        proto.Endpoints.AddRange(node.Endpoints.Select(Endpoints.Format));
        proto.AllowedIps.Add($"{node.Ipv4}/32");
        proto.AllowedIps.Add($"{node.Ipv6}/128");
        return proto;
    }

    /// <summary>A node as admin calls show it: the netmap's shape, and the subject it joined with.</summary>
    public static Node ToAdminProto(this NodeEntry node)
    {
        var proto = node.ToProto();
        if (node.Record.Subject is not { } subject)
        {
            return proto;
        }

        proto = proto.Clone(); // the netmap's copy is shared and cached
        proto.Subject = subject;
        return proto;
    }

    public static TrustPolicy ToProto(this Contracts.Model.TrustPolicy policy)
    {
        var proto = new TrustPolicy
        {
            Id = policy.Id,
            Tailnet = policy.Tailnet,
            Issuer = policy.Spec.Issuer,
            Subject = policy.Spec.Subject,
            NeedsApproval = policy.Spec.NeedsApproval,
            Description = policy.Spec.Description ?? "",
            Created = Timestamp.FromDateTimeOffset(policy.CreatedAt),
            Updated = Timestamp.FromDateTimeOffset(policy.UpdatedAt),
        };
        proto.Audiences.AddRange(policy.Spec.Audiences);
        proto.Tags.AddRange(policy.Spec.Tags);
        proto.Claims.Add(policy.Spec.Claims);
        return proto;
    }

    public static AuthKey ToProto(this AuthKeyInfo key)
    {
        var proto = new AuthKey
        {
            Id = key.Id,
            Tailnet = key.Tailnet,
            Reusable = key.Reusable,
            Ephemeral = key.Ephemeral,
            Preauthorized = key.Preauthorized,
            Created = Timestamp.FromDateTimeOffset(key.Created),
            Expires = key.Expires is { } expires ? Timestamp.FromDateTimeOffset(expires) : null,
            Description = key.Description ?? "",
            Revoked = key.Revoked,
            Uses = key.Uses,
        };
        proto.Tags.AddRange(key.Tags);
        return proto;
    }

    private static Protocol.V1.PacketFilterRule ToProto(Contracts.Policy.PacketFilterRule rule) =>
        new() { Sources = { rule.Sources }, Ports = rule.Ports };

    private static readonly byte[] KeepAliveBytes = KeepAliveResponse.ToByteArray();

    /// <summary>A netmap message's <c>MapResponse</c> encoding, made once per message however many streams send it
    /// (streams of one policy class share their deltas); a message is only read once made, so sharing is safe.</summary>
    private static readonly ConditionalWeakTable<MapMessage, byte[]> WireCache = new();

    public static byte[] ToProtoBytes(this MapMessage message) =>
        message is KeepAliveMessage ? KeepAliveBytes : WireCache.GetValue(message, m => Convert(m).ToByteArray());

    private static MapResponse Convert(MapMessage message)
    {
        switch (message)
        {
            case FullMapMessage full:
                var map = new FullMap { Version = full.Version, Self = full.Self.ToProto() };
                map.Peers.AddRange(full.Peers.Select(ToProto));
                map.PacketFilter.AddRange(full.PacketFilter.Select(ToProto));
                return new MapResponse { Full = map };
            case DeltaMessage delta:
                var proto = new MapDelta { Version = delta.Version, Self = delta.Self?.ToProto() };
                proto.PeersChanged.AddRange(delta.PeersChanged.Select(ToProto));
                proto.PeersRemoved.AddRange(delta.PeersRemoved);
                proto.PeersChangedPatch.AddRange((delta.PeersChangedPatch ?? []).Select(p => new PeerPatch
                {
                    Id = p.Id,
                    Online = p.Online,
                    LastSeen = p.LastSeen is { } seen ? Timestamp.FromDateTimeOffset(seen) : null,
                }));
                if (delta.PacketFilter is { } filter)
                {
                    proto.PacketFilter = new PacketFilter { Rules = { filter.Select(ToProto) } };
                }

                return new MapResponse { Delta = proto };
            default:
                return KeepAliveResponse;
        }
    }
}
