namespace EphemeralOrleans.Contracts.Grains;

/// <summary>
/// The addresses the admin key has been used from (one grain, key 0), so that its first use from another address is
/// recorded in the admin log (<see cref="Model.EventLogs.Admin"/>) once, whichever gateway sees it.
/// </summary>
[Alias("eo.IAdminAccessGrain")]
public interface IAdminAccessGrain : IGrainWithIntegerKey
{
    /// <summary>Notes a successful use from <paramref name="source"/> (an address, or an IPv6 /64); the first from it
    /// is recorded as <c>admin.new_address</c>. True when it was new.</summary>
    [Alias("Used")]
    Task<bool> Used(string source, string surface);
}
