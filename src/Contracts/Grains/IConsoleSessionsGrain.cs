using Orleans.Concurrency;

namespace EphemeralOrleans.Contracts.Grains;

/// <summary>
/// The console's sign-in sessions (the grain of key <see cref="Key"/>), kept on the server so that signing out, or the
/// end of a session's lifetime, ends it for every copy of its cookie. A session is named by the hash of its id (the id
/// itself is only in the cookie); its ticket carries no secret.
/// </summary>
[Alias("eo.IConsoleSessionsGrain")]
public interface IConsoleSessionsGrain : IGrainWithStringKey
{
    /// <summary>The single instance's key.</summary>
    public const string Key = "admin-console";

    /// <summary>Stores or replaces a session until <paramref name="expiresAt"/>; completes once durable.</summary>
    [Alias("Store")]
    Task Store(string idHash, byte[] ticket, DateTimeOffset expiresAt);

    /// <summary>The session's ticket, or null when it was never stored, was removed or has expired.</summary>
    [ReadOnly]
    [Alias("Retrieve")]
    Task<byte[]?> Retrieve(string idHash);

    /// <summary>Ends a session (idempotent); completes once durable.</summary>
    [Alias("Remove")]
    Task Remove(string idHash);
}
