using Orleans.Concurrency;

namespace EphemeralOrleans.Contracts.Grains;

/// <summary>
/// The gateways' shared secrets (the grain of key <see cref="Key"/>): the ASP.NET Core data-protection key ring, so that
/// a console session cookie or anti-forgery token issued by one gateway is accepted by the others and survives
/// restarts; and the control key every gateway of the cluster verifies registration proofs with.
/// </summary>
[Alias("eo.IKeyRingGrain")]
public interface IKeyRingGrain : IGrainWithStringKey
{
    /// <summary>The console's key ring.</summary>
    public const string Key = "admin-console";

    /// <summary>Every stored key element, as XML text, by its friendly name.</summary>
    [ReadOnly]
    [Alias("GetElements")]
    Task<Dictionary<string, string>> GetElements();

    /// <summary>Removes the elements of these friendly names (keys stored unencrypted before encryption was configured);
    /// completes once durable.</summary>
    [Alias("RemoveElements")]
    Task RemoveElements(string[] friendlyNames);

    /// <summary>Stores one key element under <paramref name="friendlyName"/> (replacing one of the same name); completes once durable.</summary>
    [Alias("StoreElement")]
    Task StoreElement(string friendlyName, string xml);

    /// <summary>The gateways' X25519 control key (its private half, base64): the stored one, or
    /// <paramref name="candidate"/> stored now when there is none yet. Completes once the key is durable, so every
    /// gateway of the cluster, concurrent first starts included, ends up with the same key.</summary>
    [Alias("GetOrCreateControlKey")]
    Task<string> GetOrCreateControlKey(string candidate);

    /// <summary>Replaces the stored control key text <paramref name="stored"/> by <paramref name="replacement"/> (the same
    /// key, encrypted); nothing when another gateway replaced it first. Completes once durable.</summary>
    [Alias("ReplaceControlKey")]
    Task ReplaceControlKey(string stored, string replacement);
}
