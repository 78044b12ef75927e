using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;

namespace EphemeralOrleans.Contracts.Validation;

/// <summary>Parsing and checking of the identities and formats of the public contract. Patterns are anchored with
/// <c>\A</c> and <c>\z</c>: in .NET <c>$</c> also matches before a final newline, which let <c>"nodekey:…\n"</c>
/// register a second device with the same key.</summary>
public static partial class Identifiers
{
    public const string DefaultTailnet = "default";

    [GeneratedRegex(@"\A[a-z0-9][a-z0-9.-]{0,62}\z")]
    private static partial Regex TailnetPattern();

    [GeneratedRegex(@"\Atag:[a-z0-9-]+\z")]
    private static partial Regex TagPattern();

    [GeneratedRegex(@"\Anodekey:[0-9a-fA-F]{64}\z")]
    private static partial Regex NodeKeyPattern();

    [GeneratedRegex(@"\Aeo-auth-([A-Za-z0-9]+)-([A-Za-z0-9]+)\z")]
    private static partial Regex AuthKeyPattern();

    /// <summary>Resolves a tailnet path segment (<c>-</c> is the default tailnet); false when it is not a valid name.</summary>
    public static bool TryTailnet(string? segment, [NotNullWhen(true)] out string? tailnet)
    {
        tailnet = segment == "-" ? DefaultTailnet : segment;
        return tailnet is not null && TailnetPattern().IsMatch(tailnet);
    }

    public static bool IsTag([NotNullWhen(true)] string? tag) => tag is not null && TagPattern().IsMatch(tag);

    /// <summary>Normalizes a node key to lowercase; false when it is not <c>nodekey:</c> followed by 64 hex digits.</summary>
    public static bool TryNodeKey(string? value, [NotNullWhen(true)] out string? nodeKey)
    {
        nodeKey = value is not null && NodeKeyPattern().IsMatch(value) ? value.ToLowerInvariant() : null;
        return nodeKey is not null;
    }

    /// <summary>Splits <c>eo-auth-&lt;id&gt;-&lt;secret&gt;</c>; false when malformed.</summary>
    public static bool TryAuthKey(string? value, [NotNullWhen(true)] out string? id, [NotNullWhen(true)] out string? secret)
    {
        var match = value is null || value.Length > 200 ? null : AuthKeyPattern().Match(value);
        id = match is { Success: true } ? match.Groups[1].Value : null;
        secret = match is { Success: true } ? match.Groups[2].Value : null;
        return id is not null && secret is not null;
    }

    public static string FormatAuthKey(string id, string secret) => $"eo-auth-{id}-{secret}";

    /// <summary>Text shown to people (host names, descriptions) without the characters that make a display lie:
    /// format characters (bidi overrides and isolates, zero-width joiners and spaces, the BOM); null when a control
    /// character (newline, escape, …) is in it, which no display name needs.</summary>
    public static string? DisplayText(string text)
    {
        if (text.Any(char.IsControl))
        {
            return null;
        }

        return text.Any(c => char.GetUnicodeCategory(c) == System.Globalization.UnicodeCategory.Format)
            ? new string(text.Where(c => char.GetUnicodeCategory(c) != System.Globalization.UnicodeCategory.Format).ToArray())
            : text;
    }

    /// <summary>A node name as the tailnet gives them: 1 to 63 of <c>[a-z0-9-]</c>, not starting or ending with <c>-</c>.</summary>
    public static bool IsNodeName(string? name) => name is { Length: > 0 and <= 63 } && NameFromHostname(name) == name;

    /// <summary>A hostname reduced to a DNS label usable as a node name (lowercase letters, digits and dashes).</summary>
    public static string NameFromHostname(string hostname)
    {
        var builder = new StringBuilder(Math.Min(hostname.Length, 63));
        foreach (var c in hostname.ToLowerInvariant())
        {
            if (builder.Length == 63)
            {
                break;
            }

            builder.Append(c is >= 'a' and <= 'z' or >= '0' and <= '9' ? c : '-');
        }

        var name = builder.ToString().Trim('-');
        return name.Length == 0 ? "node" : name;
    }
}

/// <summary>Node ids and the grain keys they route to.</summary>
public static class NodeIds
{
    private const int GrainKeyLength = 16;

    /// <summary>The node grain of a node key in a tailnet: 80 bits of SHA-256, base32.</summary>
    public static string GrainKeyFor(string tailnet, string nodeKey) =>
        Secrets.Base32(SHA256.HashData(Encoding.UTF8.GetBytes($"{tailnet}\n{nodeKey}")).AsSpan(0, 10));

    /// <summary>A fresh node id for a node grain: its key, a dash and a random suffix.</summary>
    public static string NewNodeId(string grainKey) => $"{grainKey}-{Secrets.Base32(RandomNumberGenerator.GetBytes(5))}";

    /// <summary>The length of an unsealed node id: the grain key, a dash, 8 random base32 characters.</summary>
    public const int UnsealedLength = GrainKeyLength + 9;

    /// <summary>The length of a sealed node id: an unsealed one and an 8-character seal.</summary>
    public const int SealedLength = UnsealedLength + 8;

    /// <summary>The grain key of a node id, sealed or not; false when the id cannot be one of ours.</summary>
    public static bool TryGrainKey(string? nodeId, [NotNullWhen(true)] out string? grainKey)
    {
        grainKey = nodeId is { Length: UnsealedLength or SealedLength } && nodeId[GrainKeyLength] == '-'
            && nodeId.Where((_, i) => i != GrainKeyLength).All(Secrets.IsBase32)
            ? nodeId[..GrainKeyLength]
            : null;
        return grainKey is not null;
    }

    /// <summary>Splits a node token <c>{nodeId}.{secret}</c>.</summary>
    public static bool TryToken(string? token, [NotNullWhen(true)] out string? nodeId, [NotNullWhen(true)] out string? secret)
    {
        var dot = token?.IndexOf('.') ?? -1;
        nodeId = dot > 0 ? token![..dot] : null;
        secret = dot > 0 && dot < token!.Length - 1 && token.Length < 200 ? token[(dot + 1)..] : null;
        return nodeId is not null && secret is not null && TryGrainKey(nodeId, out _);
    }
}

/// <summary>Random secrets, their hashes, and constant-time comparison.</summary>
public static class Secrets
{
    private const string Base32Alphabet = "abcdefghijklmnopqrstuvwxyz234567";
    private const string Base62Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

    /// <summary>A random string over [A-Za-z0-9] (5.95 bits a character, without modulo bias).</summary>
    public static string Base62(int length) => RandomNumberGenerator.GetString(Base62Alphabet, length);

    public static string Base32(ReadOnlySpan<byte> bytes)
    {
        var builder = new StringBuilder((bytes.Length * 8 + 4) / 5);
        int buffer = 0, bits = 0;
        foreach (var b in bytes)
        {
            buffer = (buffer << 8) | b;
            bits += 8;
            while (bits >= 5)
            {
                builder.Append(Base32Alphabet[(buffer >> (bits - 5)) & 31]);
                bits -= 5;
            }
        }

        if (bits > 0)
        {
            builder.Append(Base32Alphabet[(buffer << (5 - bits)) & 31]);
        }

        return builder.ToString();
    }

    public static bool IsBase32(char c) => c is >= 'a' and <= 'z' or >= '2' and <= '7';

    public static byte[] Hash(string secret) => SHA256.HashData(Encoding.UTF8.GetBytes(secret));

    /// <summary>Compares a presented secret with a stored hash without leaking where they differ.</summary>
    public static bool Matches(string presented, byte[]? storedHash) =>
        storedHash is { Length: 32 } && CryptographicOperations.FixedTimeEquals(Hash(presented), storedHash);
}
