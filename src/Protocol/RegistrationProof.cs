using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using NSec.Cryptography;

namespace EphemeralOrleans.Protocol;

/// <summary>What a registration asks for, as the proof covers it: the fields exactly as the agent sent them (the node
/// key normalized to lowercase).</summary>
public sealed record RegistrationFields(string AuthKey, string NodeKey, string Hostname, bool Ephemeral);

/// <summary>
/// Proof that a registration comes from the holder of the node key's private half. Node keys are public (every peer's
/// netmap carries them), so a node key alone must never be enough to take over its node. The agent and the gateway
/// each compute the same X25519 shared secret — the node's private key with the gateway's public control key, or the
/// gateway's private control key with the node key — and derive a MAC key from it with HKDF-SHA256; the proof is
/// HMAC-SHA256 over the call, the fields' hash and a timestamp in Unix milliseconds:
/// <code>
/// key     = HKDF-SHA256(ikm: X25519 secret, salt: node key bytes ‖ control key bytes, info: "eo registration proof v1", 32 bytes)
/// fields  = "authKey=" authKey "\nnodeKey=" nodeKey "\nhostname=" hostname "\nephemeral=" ("true" | "false")
/// message = "POST /api/v1/machine/register\n" hex(SHA-256(fields)) "\n" timestamp
/// mac     = HMAC-SHA256(key, message)
/// </code>
/// The call is named by its HTTP route over either transport. The proof binds the auth key too, so a captured proof is
/// useless with another key; the gateway accepts a timestamp only within a clock window and, per node, only a
/// timestamp later than the last one it accepted, so a proof cannot be replayed.
/// </summary>
public sealed record RegistrationProof(long Timestamp, byte[] Mac)
{
    public const string Call = "POST /api/v1/machine/register";
    public const int MacLength = 32;

    private static readonly KeyAgreementAlgorithm X25519 = KeyAgreementAlgorithm.X25519;
    private static readonly byte[] Info = "eo registration proof v1"u8.ToArray();

    /// <summary>The agent's side: proves <paramref name="fields"/> with the node's private key.</summary>
    /// <exception cref="ArgumentException">The control key is not a usable X25519 public key.</exception>
    public static RegistrationProof Create(ReadOnlySpan<byte> nodePrivateKey, ReadOnlySpan<byte> controlPublicKey, RegistrationFields fields, DateTimeOffset now)
    {
        using var node = Key.Import(X25519, nodePrivateKey, KeyBlobFormat.RawPrivateKey);
        var timestamp = now.ToUnixTimeMilliseconds();
        var mac = ComputeMac(node, controlPublicKey, node.PublicKey.Export(KeyBlobFormat.RawPublicKey), controlPublicKey, fields, timestamp)
            ?? throw new ArgumentException("The gateway's control key is not a usable X25519 public key.", nameof(controlPublicKey));
        return new RegistrationProof(timestamp, mac);
    }

    /// <summary>The gateway's side: whether <see cref="Mac"/> is what the holder of <paramref name="nodePublicKey"/>'s
    /// private key computes for <paramref name="fields"/> at <see cref="Timestamp"/>. Constant-time comparison.</summary>
    public bool Verify(Key controlPrivateKey, ReadOnlySpan<byte> nodePublicKey, RegistrationFields fields)
    {
        if (Mac.Length != MacLength)
        {
            return false;
        }

        var expected = ComputeMac(controlPrivateKey, nodePublicKey, nodePublicKey, controlPrivateKey.PublicKey.Export(KeyBlobFormat.RawPublicKey), fields, Timestamp);
        return expected is not null && CryptographicOperations.FixedTimeEquals(expected, Mac);
    }

    /// <summary>The signed message (exposed for the contract's documentation and its tests).</summary>
    public static byte[] Message(RegistrationFields fields, long timestamp)
    {
        var text = $"authKey={fields.AuthKey}\nnodeKey={fields.NodeKey}\nhostname={fields.Hostname}\nephemeral={(fields.Ephemeral ? "true" : "false")}";
        var fieldsHash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
        return Encoding.UTF8.GetBytes($"{Call}\n{fieldsHash}\n{timestamp.ToString(CultureInfo.InvariantCulture)}");
    }

    private static byte[]? ComputeMac(Key ownPrivateKey, ReadOnlySpan<byte> otherPublicKey, ReadOnlySpan<byte> nodePublicKey,
        ReadOnlySpan<byte> controlPublicKey, RegistrationFields fields, long timestamp)
    {
        if (!PublicKey.TryImport(X25519, otherPublicKey, KeyBlobFormat.RawPublicKey, out var other) || other is null)
        {
            return null;
        }

        // Null for a low-order public key (an all-zero secret): such a key proves nothing.
        using var secret = X25519.Agree(ownPrivateKey, other);
        if (secret is null)
        {
            return null;
        }

        Span<byte> salt = stackalloc byte[2 * KeyText.KeyLength];
        nodePublicKey.CopyTo(salt);
        controlPublicKey.CopyTo(salt[KeyText.KeyLength..]);
        var macKey = KeyDerivationAlgorithm.HkdfSha256.DeriveBytes(secret, salt, Info, 32);
        try
        {
            return HMACSHA256.HashData(macKey, Message(fields, timestamp));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(macKey);
        }
    }
}
