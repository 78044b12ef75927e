using System.Collections.Immutable;
using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Grains.Common;

namespace EphemeralOrleans.Grains.Console;

[GenerateSerializer]
public sealed class TailnetDirectoryState
{
    [Id(0)] public ImmutableSortedSet<string> Tailnets { get; set; } = ImmutableSortedSet.Create<string>(StringComparer.Ordinal);
}

public sealed class TailnetDirectoryGrain(
    [PersistentState("tailnets", StorageNames.State)] IPersistentState<TailnetDirectoryState> directory) : Grain, ITailnetDirectoryGrain
{
    public async Task Add(string tailnet)
    {
        var before = directory.State.Tailnets;
        if (!before.Contains(tailnet))
        {
            directory.State.Tailnets = before.Add(tailnet);
            try
            {
                await directory.WriteStateAsync();
            }
            catch
            {
                // Not durable, so not recorded: the next Add writes again.
                directory.State.Tailnets = before;
                throw;
            }
        }
    }

    public Task<string[]> List() => Task.FromResult(directory.State.Tailnets.ToArray());
}

[GenerateSerializer]
public sealed class KeyRingState
{
    [Id(0)] public ImmutableDictionary<string, string> Elements { get; set; } = ImmutableDictionary.Create<string, string>(StringComparer.Ordinal);

    /// <summary>The gateways' control key, private half, base64; null until the first gateway asks.</summary>
    [Id(1)] public string? ControlKey { get; set; }
}

public sealed class KeyRingGrain(
    [PersistentState("keyring", StorageNames.State)] IPersistentState<KeyRingState> ring) : Grain, IKeyRingGrain
{
    public Task<string[]> GetElements() => Task.FromResult(ring.State.Elements.Values.ToArray());

    public async Task StoreElement(string friendlyName, string xml)
    {
        var before = ring.State.Elements;
        ring.State.Elements = before.SetItem(friendlyName, xml);
        try
        {
            await ring.WriteStateAsync();
        }
        catch
        {
            ring.State.Elements = before;
            throw;
        }
    }

    public async Task<string> GetOrCreateControlKey(string candidate)
    {
        if (ring.State.ControlKey is { } stored)
        {
            return stored;
        }

        ring.State.ControlKey = candidate;
        try
        {
            await ring.WriteStateAsync();
        }
        catch
        {
            ring.State.ControlKey = null;
            throw;
        }

        return candidate;
    }
}
