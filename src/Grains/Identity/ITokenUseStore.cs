namespace EphemeralOrleans.Grains.Identity;

/// <summary>
/// The uses of OIDC ID tokens (see <see cref="Contracts.Grains.ITokenLedgerGrain"/>): one record per token, by the hash
/// of the token (never the token), kept until the token expires and then pruned.
/// </summary>
public interface ITokenUseStore
{
    /// <summary>Records <paramref name="nodeKey"/> as the token's node until <paramref name="expiresAt"/>, atomically,
    /// unless a record that has not expired by <paramref name="now"/> names another node key (then false).</summary>
    Task<bool> ClaimAsync(string replayKey, string nodeKey, DateTimeOffset expiresAt, DateTimeOffset now);

    /// <summary>Deletes the records expired by <paramref name="now"/>; how many.</summary>
    Task<int> PruneAsync(DateTimeOffset now, CancellationToken cancellationToken);
}
