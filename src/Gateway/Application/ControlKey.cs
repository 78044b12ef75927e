using System.Security.Cryptography;
using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Gateway.Hosting;
using EphemeralOrleans.Protocol;
using NSec.Cryptography;

namespace EphemeralOrleans.Gateway.Application;

/// <summary>
/// The gateways' static X25519 control key: agents prove they hold their node key by a MAC keyed with the secret it
/// shares with this key (<see cref="RegistrationProof"/>). Kept in the key ring grain, so it survives restarts and
/// every gateway of a cluster has the same one; loaded on first use and then held in memory.
/// </summary>
public sealed class ControlKey(IGrainFactory grains, KeyRingEncryption encryption) : IDisposable
{
    private readonly SemaphoreSlim _loading = new(1, 1);
    private volatile Key? _key;
    private byte[]? _sealKey;

    /// <summary>The private key, for verifying proofs.</summary>
    /// <exception cref="InvalidOperationException">The stored key was encrypted to another certificate than the configured one.</exception>
    public async Task<Key> PrivateKeyAsync(CancellationToken cancellationToken = default) => _key ?? await LoadAsync(cancellationToken);

    /// <summary>A MAC key derived from the private key, for sealing ids (<see cref="IdSeal"/>): the same on every
    /// gateway of the cluster, and across restarts.</summary>
    public async Task<byte[]> SealKeyAsync(CancellationToken cancellationToken = default)
    {
        await PrivateKeyAsync(cancellationToken);
        return _sealKey!;
    }

    /// <summary>The public key as agents are given it: <c>controlkey:&lt;64 hex&gt;</c>.</summary>
    public async Task<string> PublicTextAsync(CancellationToken cancellationToken = default) =>
        KeyText.ControlKey((await PrivateKeyAsync(cancellationToken)).PublicKey.Export(KeyBlobFormat.RawPublicKey));

    public void Dispose() => _key?.Dispose();

    private async Task<Key> LoadAsync(CancellationToken cancellationToken)
    {
        await _loading.WaitAsync(cancellationToken);
        try
        {
            if (_key is { } loaded)
            {
                return loaded;
            }

            // Every gateway offers a fresh key; the ring keeps the first one stored and hands that to all.
            using var candidate = Key.Create(KeyAgreementAlgorithm.X25519,
                new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport });
            var ring = grains.GetGrain<IKeyRingGrain>(IKeyRingGrain.Key);
            var stored = await ring.GetOrCreateControlKey(encryption.Protect(candidate.Export(KeyBlobFormat.RawPrivateKey))).WaitAsync(cancellationToken);
            var privateKey = encryption.Unprotect(stored);
            if (encryption.Certificate is not null && !KeyRingEncryption.IsEncrypted(stored))
            {
                // Stored before encryption was configured: the same key, encrypted from now on.
                await ring.ReplaceControlKey(stored, encryption.Protect(privateKey)).WaitAsync(cancellationToken);
            }

            _sealKey = HMACSHA256.HashData(privateKey, "eo id seal"u8);
            _key = Key.Import(KeyAgreementAlgorithm.X25519, privateKey, KeyBlobFormat.RawPrivateKey);
            return _key;
        }
        finally
        {
            _loading.Release();
        }
    }
}
