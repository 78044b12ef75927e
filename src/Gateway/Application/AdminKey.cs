using System.Security.Cryptography;
using System.Text;

namespace EphemeralOrleans.Gateway.Application;

/// <summary>The admin API key, held only as a hash and compared in constant time (HTTP and gRPC alike).</summary>
public sealed class AdminKey(string key)
{
    private readonly byte[] _hash = SHA256.HashData(Encoding.UTF8.GetBytes(key));

    /// <summary>Names this key without revealing it (a hash of its hash): console sessions carry it, so a new key ends them.</summary>
    public string Fingerprint => Convert.ToHexString(SHA256.HashData(_hash))[..16];

    /// <summary>The least a configured admin key must have: it opens everything, and is tried from anywhere.</summary>
    public const int MinimumLength = 32;

    /// <summary>Why <paramref name="key"/> is too weak to be the admin key (too short, or too few distinct characters
    /// to be random, like <c>aaaa…</c> or a word repeated); null when it will do.</summary>
    public static string? Weakness(string key) =>
        key.Length < MinimumLength ? $"it has {key.Length} characters; at least {MinimumLength} are needed"
        : key.Distinct().Count() is var distinct and < 12 ? $"it uses only {distinct} distinct characters; a random secret uses many more"
        : null;

    public bool Matches(string? presented) =>
        presented is not null && CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(presented)), _hash);
}

/// <summary>Credentials as both transports carry them: <c>authorization: Bearer …</c>.</summary>
public static class Credentials
{
    /// <summary>The token of an <c>authorization</c> header value, or null when it is not a bearer credential.</summary>
    public static string? Bearer(string? authorization) =>
        authorization is not null && authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)
            ? authorization["Bearer ".Length..].Trim()
            : null;
}
