namespace EphemeralOrleans.Contracts.Grains;

/// <summary>
/// One OIDC ID token's use (keyed by a hash of its issuer and <c>jti</c>, or of the whole token): the node key it
/// registered, until the token expires. So a token registers one node; the same node key may use it again (its agent
/// restarted), any other is refused.
/// </summary>
[Alias("ITokenReplayGrain")]
public interface ITokenReplayGrain : IGrainWithStringKey
{
    /// <summary>Records <paramref name="nodeKey"/> as the token's node until <paramref name="expiresAt"/>; false when
    /// the token already registered another node key and has not expired. Completes once recorded durably.</summary>
    [Alias("Claim")]
    Task<bool> Claim(string nodeKey, DateTimeOffset expiresAt);
}
