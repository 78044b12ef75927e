using Orleans.Concurrency;

namespace EphemeralOrleans.Contracts.Grains;

/// <summary>The names of every tailnet that has had an auth key (the one grain of key <see cref="Key"/>): the console's switcher.</summary>
public interface ITailnetDirectoryGrain : IGrainWithIntegerKey
{
    /// <summary>The single instance's key.</summary>
    public const long Key = 0;

    /// <summary>Records a tailnet name (idempotent); completes once it is durable.</summary>
    Task Add(string tailnet);

    /// <summary>Every recorded tailnet name, sorted.</summary>
    [ReadOnly]
    Task<string[]> List();
}

/// <summary>The tailnets as the gateways list them.</summary>
public static class TailnetDirectory
{
    /// <summary>Every tailnet: those the directory recorded, and the default one, which exists without being recorded; sorted.</summary>
    public static async Task<string[]> ListTailnetsAsync(this IGrainFactory grains) =>
        (await grains.GetGrain<ITailnetDirectoryGrain>(ITailnetDirectoryGrain.Key).List())
            .Append(Validation.Identifiers.DefaultTailnet).Distinct().Order(StringComparer.Ordinal).ToArray();
}

/// <summary>
/// The gateways' shared secrets (the grain of key <see cref="Key"/>): the ASP.NET Core data-protection key ring, so that
/// a console session cookie or anti-forgery token issued by one gateway is accepted by the others and survives
/// restarts; and the control key every gateway of the cluster verifies registration proofs with.
/// </summary>
public interface IKeyRingGrain : IGrainWithStringKey
{
    /// <summary>The console's key ring.</summary>
    public const string Key = "admin-console";

    /// <summary>Every stored key element, as XML text, by its friendly name.</summary>
    [ReadOnly]
    Task<Dictionary<string, string>> GetElements();

    /// <summary>Removes the elements of these friendly names (keys stored unencrypted before encryption was configured);
    /// completes once durable.</summary>
    Task RemoveElements(string[] friendlyNames);

    /// <summary>Stores one key element under <paramref name="friendlyName"/> (replacing one of the same name); completes once durable.</summary>
    Task StoreElement(string friendlyName, string xml);

    /// <summary>The gateways' X25519 control key (its private half, base64): the stored one, or
    /// <paramref name="candidate"/> stored now when there is none yet. Completes once the key is durable, so every
    /// gateway of the cluster, concurrent first starts included, ends up with the same key.</summary>
    Task<string> GetOrCreateControlKey(string candidate);

    /// <summary>Replaces the stored control key text <paramref name="stored"/> by <paramref name="replacement"/> (the same
    /// key, encrypted); nothing when another gateway replaced it first. Completes once durable.</summary>
    Task ReplaceControlKey(string stored, string replacement);
}

/// <summary>
/// The console's sign-in sessions (the grain of key <see cref="Key"/>), kept on the server so that signing out, or the
/// end of a session's lifetime, ends it for every copy of its cookie. A session is named by the hash of its id (the id
/// itself is only in the cookie); its ticket carries no secret.
/// </summary>
public interface IConsoleSessionsGrain : IGrainWithStringKey
{
    /// <summary>The single instance's key.</summary>
    public const string Key = "admin-console";

    /// <summary>Stores or replaces a session until <paramref name="expiresAt"/>; completes once durable.</summary>
    Task Store(string idHash, byte[] ticket, DateTimeOffset expiresAt);

    /// <summary>The session's ticket, or null when it was never stored, was removed or has expired.</summary>
    [ReadOnly]
    Task<byte[]?> Retrieve(string idHash);

    /// <summary>Ends a session (idempotent); completes once durable.</summary>
    Task Remove(string idHash);
}
