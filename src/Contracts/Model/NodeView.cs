using System.Text.Json.Serialization;

namespace EphemeralOrleans.Contracts.Model;

/// <summary>A node as agents and operators see it (the API's <c>Node</c>).</summary>
[GenerateSerializer, Immutable]
public sealed record NodeView(
    [property: Id(0)] string Id,
    [property: Id(1)] string Name,
    [property: Id(2)] string Hostname,
    [property: Id(3)] string NodeKey,
    [property: Id(4)] string Ipv4,
    [property: Id(5)] string Ipv6,
    [property: Id(6)] bool Ephemeral,
    [property: Id(7)] string[] Tags,
    [property: Id(8)] bool Online,
    [property: Id(9)] DateTimeOffset? LastSeen,
    [property: Id(10)] DateTimeOffset Created,
    [property: Id(11)] bool Authorized,
    [property: Id(12)] bool LoggedOut,
    [property: Id(13)] string KeyId,
    [property: Id(14)] string Tailnet)
{
    /// <summary>Bumped whenever the node's token is replaced or revoked; a stream opened under an older epoch closes.</summary>
    [Id(15), JsonIgnore]
    public int SessionEpoch { get; init; }
}
