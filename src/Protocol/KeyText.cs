using System.Diagnostics.CodeAnalysis;

namespace EphemeralOrleans.Protocol;

/// <summary>The text forms of the 32-byte X25519 public keys: <c>nodekey:&lt;64 hex&gt;</c> for a device,
/// <c>controlkey:&lt;64 hex&gt;</c> for the gateways' control key.</summary>
public static class KeyText
{
    public const string NodeKeyPrefix = "nodekey:";
    public const string ControlKeyPrefix = "controlkey:";
    public const int KeyLength = 32;

    public static string NodeKey(ReadOnlySpan<byte> publicKey) => NodeKeyPrefix + Convert.ToHexStringLower(publicKey);

    public static string ControlKey(ReadOnlySpan<byte> publicKey) => ControlKeyPrefix + Convert.ToHexStringLower(publicKey);

    /// <summary>The key bytes of <c>prefix</c> followed by exactly 64 hex digits (either case); false otherwise.</summary>
    public static bool TryParse(string? text, string prefix, [NotNullWhen(true)] out byte[]? key)
    {
        key = null;
        if (text is null || text.Length != prefix.Length + 2 * KeyLength || !text.StartsWith(prefix, StringComparison.Ordinal))
        {
            return false;
        }

        var hex = text.AsSpan(prefix.Length);
        foreach (var c in hex)
        {
            if (!char.IsAsciiHexDigit(c))
            {
                return false;
            }
        }

        key = Convert.FromHexString(hex);
        return true;
    }
}
