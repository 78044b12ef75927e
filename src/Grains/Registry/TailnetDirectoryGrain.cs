using System.Collections.Immutable;
using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Grains.Common;

namespace EphemeralOrleans.Grains.Registry;

[GenerateSerializer, Alias("eo.TailnetDirectoryState")]
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
