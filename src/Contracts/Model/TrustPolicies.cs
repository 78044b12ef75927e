using System.Collections.Immutable;

namespace EphemeralOrleans.Contracts.Model;

/// <summary>
/// Whom a tailnet lets join with an OIDC ID token instead of an auth key (workload identity): tokens from
/// <see cref="Issuer"/> for one of <see cref="Audiences"/>, whose subject matches <see cref="Subject"/> (exact, or a
/// glob with <c>*</c> and <c>?</c>) and whose <see cref="Claims"/> are exactly as given. Their nodes are always
/// ephemeral and get <see cref="Tags"/>; with <see cref="NeedsApproval"/> an admin approves each.
/// </summary>
[GenerateSerializer, Immutable, Alias("TrustPolicySpec")]
public sealed record TrustPolicySpec(
    [property: Id(0)] string Issuer,
    [property: Id(1)] ImmutableArray<string> Audiences,
    [property: Id(2)] string Subject,
    [property: Id(3)] ImmutableSortedDictionary<string, string> Claims,
    [property: Id(4)] ImmutableArray<string> Tags,
    [property: Id(5)] bool NeedsApproval,
    [property: Id(6)] string? Description);

/// <summary>A trust policy of a tailnet, as stored and as operators see it.</summary>
[GenerateSerializer, Immutable, Alias("TrustPolicy")]
public sealed record TrustPolicy(
    [property: Id(0)] string Id,
    [property: Id(1)] string Tailnet,
    [property: Id(2)] TrustPolicySpec Spec,
    [property: Id(3)] DateTimeOffset CreatedAt,
    [property: Id(4)] DateTimeOffset UpdatedAt);

/// <summary>A trust policy as the API shows it.</summary>
public sealed record TrustPolicyView(
    string Id,
    string Tailnet,
    string Issuer,
    string[] Audiences,
    string Subject,
    IReadOnlyDictionary<string, string> Claims,
    string[] Tags,
    bool NeedsApproval,
    string? Description,
    DateTimeOffset Created,
    DateTimeOffset Updated)
{
    public static TrustPolicyView From(TrustPolicy policy) => new(
        policy.Id, policy.Tailnet, policy.Spec.Issuer, [.. policy.Spec.Audiences], policy.Spec.Subject, policy.Spec.Claims, [.. policy.Spec.Tags],
        policy.Spec.NeedsApproval, policy.Spec.Description, policy.CreatedAt, policy.UpdatedAt);
}
