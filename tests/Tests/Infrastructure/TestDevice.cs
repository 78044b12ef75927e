using EphemeralOrleans.Protocol;
using NSec.Cryptography;

namespace EphemeralOrleans.Tests.Infrastructure;

/// <summary>A device as an agent holds it: an X25519 key pair whose public half is its node key, able to prove it.</summary>
public sealed class TestDevice
{
    private readonly byte[] _privateKey;

    private TestDevice(byte[] privateKey, byte[] publicKey)
    {
        _privateKey = privateKey;
        NodeKey = KeyText.NodeKey(publicKey);
    }

    public string NodeKey { get; }

    public static TestDevice Create()
    {
        using var key = Key.Create(KeyAgreementAlgorithm.X25519, new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport });
        return new TestDevice(key.Export(KeyBlobFormat.RawPrivateKey), key.PublicKey.Export(KeyBlobFormat.RawPublicKey));
    }

    /// <summary>A registration proof for these fields against the gateway's <paramref name="controlKey"/> (<c>controlkey:…</c>),
    /// made with this device's private key; <paramref name="claiming"/> puts another node key in the fields, as a thief would.</summary>
    public RegistrationProof Prove(string controlKey, string authKey, string hostname = "host", bool ephemeral = false, DateTimeOffset? at = null,
        string? claiming = null)
    {
        Assert.True(KeyText.TryParse(controlKey, KeyText.ControlKeyPrefix, out var control), $"control key '{controlKey}'");
        return RegistrationProof.Create(_privateKey, control, new RegistrationFields(authKey, claiming ?? NodeKey, hostname, ephemeral), at ?? DateTimeOffset.UtcNow);
    }
}
