using System.Security.Cryptography;
using System.Text;
using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Validation;

namespace EphemeralOrleans.Gateway.Application;

/// <summary>
/// The seal on the ids this cluster hands out — auth key ids and node ids end in 40 bits of a MAC keyed by the
/// cluster's control key — so that a credential naming an id no gateway issued is refused without activating a grain
/// (a flood of made-up keys or tokens costs a MAC each, not an activation and a storage read each). Ids issued before
/// ids were sealed are known from the tailnets (loaded once, on the first unsealed id presented) and still work.
/// </summary>
public sealed class IdSeal(ControlKey controlKey, IGrainFactory grains)
{
    private const int KeyIdBodyLength = 12;
    private const int SealLength = 8; // 5 bytes, base32

    private readonly Lock _lock = new();
    private Task<IssuedBeforeSealing>? _issuedBeforeSealing;

    /// <summary>A fresh auth key id: 12 random base62 characters and the seal.</summary>
    public async Task<string> NewKeyIdAsync()
    {
        var body = Secrets.Base62(KeyIdBodyLength);
        return body + Seal(await controlKey.SealKeyAsync(), "key", body);
    }

    /// <summary>A fresh id for a node of grain <paramref name="grainKey"/>: an unsealed node id and the seal.</summary>
    public async Task<string> NewNodeIdAsync(string grainKey)
    {
        var body = NodeIds.NewNodeId(grainKey);
        return body + Seal(await controlKey.SealKeyAsync(), "node", body);
    }

    /// <summary>Whether <paramref name="keyId"/> may name a key: sealed by this cluster, or issued before sealing.</summary>
    public async Task<bool> MayBeKeyAsync(string keyId) =>
        keyId.Length == KeyIdBodyLength + SealLength
            ? Verifies(await controlKey.SealKeyAsync(), "key", keyId)
            : (await IssuedBeforeSealingAsync()).KeyIds.Contains(keyId);

    /// <summary>Whether <paramref name="nodeId"/> may name a node: sealed by this cluster, or issued before sealing.</summary>
    public async Task<bool> MayBeNodeAsync(string nodeId) =>
        nodeId.Length == NodeIds.SealedLength
            ? Verifies(await controlKey.SealKeyAsync(), "node", nodeId)
            : (await IssuedBeforeSealingAsync()).NodeIds.Contains(nodeId);

    private static bool Verifies(byte[] sealKey, string kind, string id)
    {
        var body = id[..^SealLength];
        return CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(Seal(sealKey, kind, body)), Encoding.ASCII.GetBytes(id[^SealLength..]));
    }

    private static string Seal(byte[] sealKey, string kind, string body) =>
        Secrets.Base32(HMACSHA256.HashData(sealKey, Encoding.UTF8.GetBytes(kind + "\n" + body)).AsSpan(0, 5));

    private Task<IssuedBeforeSealing> IssuedBeforeSealingAsync()
    {
        lock (_lock)
        {
            // A load that failed (the cluster not ready) is tried again by the next caller.
            if (_issuedBeforeSealing is null || _issuedBeforeSealing.IsFaulted || _issuedBeforeSealing.IsCanceled)
            {
                _issuedBeforeSealing = LoadIssuedBeforeSealingAsync();
            }

            return _issuedBeforeSealing;
        }
    }

    /// <summary>The unsealed key and node ids of every tailnet. No unsealed id is issued any more, so the set is final
    /// (it only holds ids that may since have gone, which their grains then refuse).</summary>
    private async Task<IssuedBeforeSealing> LoadIssuedBeforeSealingAsync()
    {
        var tailnets = await grains.ListTailnetsAsync();
        var keyIds = new HashSet<string>(StringComparer.Ordinal);
        var nodeIds = new HashSet<string>(StringComparer.Ordinal);
        foreach (var tailnet in tailnets)
        {
            var tailnetGrain = grains.GetGrain<ITailnetGrain>(tailnet);
            keyIds.UnionWith((await tailnetGrain.ListKeyIds()).Where(id => id.Length != KeyIdBodyLength + SealLength));
            nodeIds.UnionWith((await tailnetGrain.GetSnapshot()).Nodes.Select(n => n.Id).Where(id => id.Length != NodeIds.SealedLength));
        }

        return new IssuedBeforeSealing(keyIds, nodeIds);
    }

    private sealed record IssuedBeforeSealing(HashSet<string> KeyIds, HashSet<string> NodeIds);
}
