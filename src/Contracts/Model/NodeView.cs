namespace EphemeralOrleans.Contracts.Model;

/// <summary>A node as agents and operators see it (the API's <c>Node</c>): the JSON shape, mapped from a
/// <see cref="NodeEntry"/> at the edge. Never stored, never passed between grains.</summary>
public sealed record NodeView(
    string Id,
    string Name,
    string Hostname,
    string NodeKey,
    string Ipv4,
    string Ipv6,
    bool Ephemeral,
    string[] Tags,
    bool Online,
    DateTimeOffset? LastSeen,
    DateTimeOffset Created,
    bool Authorized,
    bool LoggedOut,
    string KeyId,
    string Tailnet,
    string[] Endpoints,
    string[] AllowedIps)
{
    /// <summary>The subject of the OIDC token that registered the node, for operators (peers' netmaps leave it out).</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public string? Subject { get; init; }

    public static NodeView From(NodeEntry entry)
    {
        var node = entry.Record;
        return new NodeView(
            node.Id,
            node.Name,
            node.Hostname,
            node.NodeKey,
            node.Ipv4.ToString(),
            node.Ipv6.ToString(),
            node.Ephemeral,
            node.Tags.ToArray(),
            entry.Presence.Online,
            entry.Presence.LastSeen,
            node.Created,
            node.Authorized,
            node.LoggedOut,
            node.KeyId,
            node.Tailnet,
            node.Endpoints.Select(Validation.Endpoints.Format).ToArray(),
            [$"{node.Ipv4}/32", $"{node.Ipv6}/128"])
        {
            Subject = node.Subject,
        };
    }
}
