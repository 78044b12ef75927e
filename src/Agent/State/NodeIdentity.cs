using EphemeralOrleans.Protocol;
using NSec.Cryptography;

namespace EphemeralOrleans.Agent.State;

/// <summary>The node's X25519 key pair; its public half is the node key the gateway knows the device by (and, later,
/// its WireGuard key).</summary>
public sealed class NodeIdentity
{
    private static readonly KeyAgreementAlgorithm Algorithm = KeyAgreementAlgorithm.X25519;

    private NodeIdentity(byte[] privateKey, byte[] publicKey)
    {
        PrivateKey = privateKey;
        NodeKey = KeyText.NodeKey(publicKey);
    }

    public byte[] PrivateKey { get; }

    /// <summary><c>nodekey:</c> and the 32-byte public key in hex.</summary>
    public string NodeKey { get; }

    public static NodeIdentity Generate()
    {
        using var key = Key.Create(Algorithm, new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport });
        return new NodeIdentity(key.Export(KeyBlobFormat.RawPrivateKey), key.PublicKey.Export(KeyBlobFormat.RawPublicKey));
    }

    public static NodeIdentity FromPrivateKey(byte[] privateKey)
    {
        using var key = Key.Import(Algorithm, privateKey, KeyBlobFormat.RawPrivateKey,
            new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport });
        return new NodeIdentity(privateKey, key.PublicKey.Export(KeyBlobFormat.RawPublicKey));
    }
}
