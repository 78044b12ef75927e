using EphemeralOrleans.Contracts.Model;
using Orleans.Concurrency;

namespace EphemeralOrleans.Contracts.Grains;

/// <summary>One auth key, keyed by the <c>&lt;id&gt;</c> part of <c>eo-auth-&lt;id&gt;-&lt;secret&gt;</c>. Stores only a hash of the secret.</summary>
[Alias("eo.IAuthKeyGrain")]
public interface IAuthKeyGrain : IGrainWithStringKey
{
    /// <summary>Creates the key in <paramref name="tailnet"/> and returns its full string once; fails if the id is already taken.</summary>
    [Alias("Create")]
    Task<CreatedAuthKey?> Create(string tailnet, AuthKeySpec spec);

    /// <summary>Checks <paramref name="secret"/> in constant time and, if the key is usable, counts one use and returns what it grants.
    /// <paramref name="requestId"/>: the gateway's id of the registration, the same when it retries one that may have
    /// reached the key before a silo failed: a redemption already counted for it is granted again, not counted twice.</summary>
    [Alias("Redeem")]
    Task<RedeemResult> Redeem(string secret, string? requestId = null);

    /// <summary>The key as operators see it, or null when it does not exist.</summary>
    [ReadOnly]
    [Alias("Describe")]
    Task<AuthKeyInfo?> Describe();

    /// <summary>Revokes the key; nodes it registered stay. Returns false when it does not exist.</summary>
    [Alias("Revoke")]
    Task<bool> Revoke();
}
