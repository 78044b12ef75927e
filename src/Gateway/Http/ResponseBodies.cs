using EphemeralOrleans.Contracts.Model;

namespace EphemeralOrleans.Gateway.Http;

// The HTTP API's response bodies that are not a model type of their own: named, so that the OpenAPI document
// (/openapi/v1.json) describes exactly what the endpoints write.

/// <summary><c>POST /api/v1/machine/register</c>: the node and its token (shown once).</summary>
public sealed record RegisterResponse(NodeView Node, string NodeToken);

/// <summary><c>GET /api/v1/machine/endpoints</c>: where this gateway serves gRPC, and its control key.</summary>
public sealed record EndpointsResponse(string? Grpc, string ControlKey);

/// <summary>A response that carries one node (<c>PUT /api/v1/machine/self/endpoints</c>).</summary>
public sealed record NodeResponse(NodeView Node);

/// <summary>A new auth key: the full <c>eo-auth-…</c> string is shown this once.</summary>
public sealed record CreatedKeyResponse(string Id, string Key, bool Reusable, bool Ephemeral, bool Preauthorized, string[] Tags,
    DateTimeOffset Created, DateTimeOffset? Expires, string? Description)
{
    public static CreatedKeyResponse From(CreatedAuthKey created) => new(created.Info.Id, created.Key, created.Info.Reusable,
        created.Info.Ephemeral, created.Info.Preauthorized, created.Info.Tags, created.Info.Created, created.Info.Expires, created.Info.Description);
}

public sealed record KeyList(AuthKeyInfo[] Keys);

public sealed record TrustPolicyList(TrustPolicyView[] TrustPolicies);

public sealed record NodeList(NodeView[] Nodes);

/// <summary>A new webhook endpoint and its signing secret (<c>whsec_…</c>), shown this once.</summary>
public sealed record CreatedWebhookResponse(string Id, string Url, string[] Types, string? Description, DateTimeOffset Created, string Secret)
{
    public static CreatedWebhookResponse From(CreatedWebhook created) =>
        new(created.Info.Id, created.Info.Url, created.Info.Types, created.Info.Description, created.Info.Created, created.Secret);
}

public sealed record WebhookList(WebhookInfo[] Webhooks);

public sealed record WebhookAttemptList(WebhookAttempt[] Attempts);

/// <summary>A page of the audit log, oldest first; <see cref="Next"/> is the <c>since</c> of the next page.</summary>
public sealed record EventPage(EventView[] Events, string Next);

public sealed record HealthResponse(string Status);

/// <summary><c>/readyz</c>: <c>ready</c> or <c>not ready</c>, and what the silo and the storage said (<c>ok</c>, <c>timeout</c>, <c>unreachable</c>).</summary>
public sealed record ReadinessResponse(string Status, string Silo, string Storage);

/// <summary>One line of <c>GET /api/v1/machine/map</c>, as the OpenAPI document describes it (the gateway writes
/// <see cref="Map.MapMessage"/>s, whose nodes go out as <see cref="NodeView"/>s; a test holds the two to one shape).</summary>
[System.Text.Json.Serialization.JsonPolymorphic(TypeDiscriminatorPropertyName = "type")]
[System.Text.Json.Serialization.JsonDerivedType(typeof(FullMapLine), "full")]
[System.Text.Json.Serialization.JsonDerivedType(typeof(DeltaLine), "delta")]
[System.Text.Json.Serialization.JsonDerivedType(typeof(KeepAliveLine), "keepalive")]
public abstract record MapLine;

/// <summary>The whole map: the node itself, its peers and its packet filter.</summary>
public sealed record FullMapLine(long Version, NodeView Self, NodeView[] Peers, Contracts.Policy.PacketFilterRule[] PacketFilter) : MapLine;

/// <summary>What changed since the previous line; <c>self</c>, <c>peersChangedPatch</c> and <c>packetFilter</c> only when there is something.</summary>
public sealed record DeltaLine(long Version, NodeView[] PeersChanged, string[] PeersRemoved, NodeView? Self,
    Map.PresencePatch[]? PeersChangedPatch, Contracts.Policy.PacketFilterRule[]? PacketFilter) : MapLine;

/// <summary>Sent when the stream was silent for <c>Map:KeepAliveInterval</c>.</summary>
public sealed record KeepAliveLine : MapLine;
