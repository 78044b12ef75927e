using System.Collections.Immutable;
using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Grains.Common;

namespace EphemeralOrleans.Grains.Identity;

[GenerateSerializer, Alias("eo.KeyRingState")]
public sealed class KeyRingState
{
    [Id(0)] public ImmutableDictionary<string, string> Elements { get; set; } = ImmutableDictionary.Create<string, string>(StringComparer.Ordinal);

    /// <summary>The gateways' control key, private half, base64; null until the first gateway asks.</summary>
    [Id(1)] public string? ControlKey { get; set; }
}

public sealed class KeyRingGrain(
    [PersistentState("keyring", StorageNames.State)] IPersistentState<KeyRingState> ring) : Grain, IKeyRingGrain
{
    public Task<Dictionary<string, string>> GetElements() => Task.FromResult(ring.State.Elements.ToDictionary(StringComparer.Ordinal));

    public Task StoreElement(string friendlyName, string xml) => WriteAsync(state => state.Elements = state.Elements.SetItem(friendlyName, xml));

    public Task RemoveElements(string[] friendlyNames) => WriteAsync(state => state.Elements = state.Elements.RemoveRange(friendlyNames));

    public async Task<string> GetOrCreateControlKey(string candidate)
    {
        if (ring.State.ControlKey is not { } stored)
        {
            await WriteAsync(state => state.ControlKey = candidate);
            stored = candidate;
        }

        return stored;
    }

    public Task ReplaceControlKey(string stored, string replacement) =>
        ring.State.ControlKey == stored ? WriteAsync(state => state.ControlKey = replacement) : Task.CompletedTask;

    /// <summary>Applies <paramref name="change"/> and writes it; on a failed write the state is as before.</summary>
    private async Task WriteAsync(Action<KeyRingState> change)
    {
        var before = new KeyRingState { Elements = ring.State.Elements, ControlKey = ring.State.ControlKey };
        change(ring.State);
        try
        {
            await ring.WriteStateAsync();
        }
        catch
        {
            ring.State.Elements = before.Elements;
            ring.State.ControlKey = before.ControlKey;
            throw;
        }
    }
}
