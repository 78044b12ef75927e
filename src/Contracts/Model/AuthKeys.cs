namespace EphemeralOrleans.Contracts.Model;

/// <summary>What an operator asks for when creating an auth key.</summary>
[GenerateSerializer, Immutable, Alias("eo.AuthKeySpec")]
public sealed record AuthKeySpec(
    [property: Id(0)] bool Reusable,
    [property: Id(1)] bool Ephemeral,
    [property: Id(2)] bool Preauthorized,
    [property: Id(3)] string[] Tags,
    [property: Id(4)] TimeSpan? Expiry,
    [property: Id(5)] string? Description);

/// <summary>An auth key as listed to operators; never carries the secret.</summary>
[GenerateSerializer, Immutable, Alias("eo.AuthKeyInfo")]
public sealed record AuthKeyInfo(
    [property: Id(0)] string Id,
    [property: Id(1)] string Tailnet,
    [property: Id(2)] bool Reusable,
    [property: Id(3)] bool Ephemeral,
    [property: Id(4)] bool Preauthorized,
    [property: Id(5)] string[] Tags,
    [property: Id(6)] DateTimeOffset Created,
    [property: Id(7)] DateTimeOffset? Expires,
    [property: Id(8)] string? Description,
    [property: Id(9)] bool Revoked,
    [property: Id(10)] int Uses);

/// <summary>A freshly created key: the full <c>eo-auth-…</c> string is shown this once.</summary>
[GenerateSerializer, Immutable, Alias("eo.CreatedAuthKey")]
public sealed record CreatedAuthKey(
    [property: Id(0)] AuthKeyInfo Info,
    [property: Id(1)] string Key);

/// <summary>What a successfully redeemed key (or a trust policy, for an OIDC token: <c>trust:&lt;policy id&gt;</c> as
/// <see cref="KeyId"/>, with the token's <see cref="Subject"/>) grants to the node it registers.</summary>
[GenerateSerializer, Immutable, Alias("eo.KeyGrant")]
public sealed record KeyGrant(
    [property: Id(0)] string KeyId,
    [property: Id(1)] string Tailnet,
    [property: Id(2)] bool Ephemeral,
    [property: Id(3)] bool Preauthorized,
    [property: Id(4)] string[] Tags,
    [property: Id(5)] string? Subject = null)
{
    /// <summary>The key id of a grant that a trust policy gave: this prefix and the policy's id.</summary>
    public const string TrustPolicyPrefix = "trust:";
}

/// <summary>The outcome of redeeming a key: a grant, or why not.</summary>
[GenerateSerializer, Immutable, Alias("eo.RedeemResult")]
public sealed record RedeemResult(
    [property: Id(0)] KeyGrant? Grant,
    [property: Id(1)] Failure? Failure);
