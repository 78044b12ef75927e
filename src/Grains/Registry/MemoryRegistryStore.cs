using System.Collections.Concurrent;
using EphemeralOrleans.Contracts.Model;

namespace EphemeralOrleans.Grains.Registry;

/// <summary>The embedded mode's registry store: this silo's memory, which outlives grain deactivations but not the process.</summary>
public sealed class MemoryRegistryStore : IRegistryStore
{
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<string, NodeEntry>> _tailnets = new(StringComparer.Ordinal);

    public Task<IReadOnlyCollection<NodeEntry>> LoadAsync(string tailnet, CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyCollection<NodeEntry>>(_tailnets.TryGetValue(tailnet, out var nodes) ? nodes.Values.ToArray() : []);

    public Task ApplyAsync(string tailnet, IReadOnlyCollection<NodeEntry> upserts, IReadOnlyCollection<string> removals)
    {
        var nodes = _tailnets.GetOrAdd(tailnet, _ => new ConcurrentDictionary<string, NodeEntry>(StringComparer.Ordinal));
        foreach (var node in upserts)
        {
            nodes[node.Id] = node;
        }

        foreach (var id in removals)
        {
            nodes.TryRemove(id, out _);
        }

        return Task.CompletedTask;
    }
}
