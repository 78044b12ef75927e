namespace EphemeralOrleans.Contracts.Grains;

/// <summary>
/// Which node key each OIDC ID token registered (a token is keyed by a hash of its issuer and <c>jti</c>, or of the
/// whole token), until the token expires. So a token registers one node; the same node key may use it again (its agent
/// restarted), any other is refused. A stateless worker in front of the silo's token-use store: use key 0.
/// </summary>
[Alias("eo.ITokenLedgerGrain")]
public interface ITokenLedgerGrain : IGrainWithIntegerKey
{
    /// <summary>Records <paramref name="nodeKey"/> as the node of the token <paramref name="replayKey"/> until
    /// <paramref name="expiresAt"/>; false when the token already registered another node key and has not expired.
    /// Completes once recorded durably.</summary>
    [Alias("Claim")]
    Task<bool> Claim(string replayKey, string nodeKey, DateTimeOffset expiresAt);
}
