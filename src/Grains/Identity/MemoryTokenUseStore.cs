namespace EphemeralOrleans.Grains.Identity;

/// <summary>The embedded mode's token uses: this silo's memory, which outlives activations but not the process.</summary>
public sealed class MemoryTokenUseStore : ITokenUseStore
{
    private readonly Dictionary<string, (string NodeKey, DateTimeOffset ExpiresAt)> _uses = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    public Task<bool> ClaimAsync(string replayKey, string nodeKey, DateTimeOffset expiresAt, DateTimeOffset now)
    {
        lock (_lock)
        {
            if (_uses.TryGetValue(replayKey, out var use) && use.ExpiresAt > now && use.NodeKey != nodeKey)
            {
                return Task.FromResult(false);
            }

            _uses[replayKey] = (nodeKey, expiresAt);
            return Task.FromResult(true);
        }
    }

    public Task<int> PruneAsync(DateTimeOffset now, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            var expired = _uses.Where(u => u.Value.ExpiresAt <= now).Select(u => u.Key).ToList();
            expired.ForEach(key => _uses.Remove(key));
            return Task.FromResult(expired.Count);
        }
    }
}
