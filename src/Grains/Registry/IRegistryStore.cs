using EphemeralOrleans.Contracts.Model;

namespace EphemeralOrleans.Grains.Registry;

/// <summary>
/// Where a tailnet's registry is kept between activations: one entry per node, written in batches of changes, so a
/// write costs what changed and never the size of the tailnet.
/// </summary>
public interface IRegistryStore
{
    /// <summary>Every stored node of the tailnet.</summary>
    Task<IReadOnlyCollection<NodeEntry>> LoadAsync(string tailnet, CancellationToken cancellationToken);

    /// <summary>Stores or replaces <paramref name="upserts"/> and deletes <paramref name="removals"/>, atomically.</summary>
    Task ApplyAsync(string tailnet, IReadOnlyCollection<NodeEntry> upserts, IReadOnlyCollection<string> removals);
}
