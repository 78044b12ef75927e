using EphemeralOrleans.Contracts.Model;
using Microsoft.Extensions.Options;

namespace EphemeralOrleans.Grains.Events;

/// <summary>The embedded mode's audit log: this silo's memory, bounded per tailnet (<see cref="EventOptions.MemoryCapacity"/>).</summary>
public sealed class MemoryEventStore(IOptions<EventOptions> options) : IEventStore
{
    private readonly Dictionary<string, TailnetLog> _logs = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    private sealed class TailnetLog
    {
        public readonly LinkedList<(AuditEvent Event, string? Once)> Events = new();
        public readonly HashSet<string> Once = new(StringComparer.Ordinal);
        public long LastId;
    }

    public Task<long> LastIdAsync(string tailnet)
    {
        lock (_lock)
        {
            return Task.FromResult(_logs.TryGetValue(tailnet, out var log) ? log.LastId : 0);
        }
    }

    public Task AppendAsync(string tailnet, IReadOnlyList<(AuditEvent Event, string? Once)> events)
    {
        lock (_lock)
        {
            var log = _logs.TryGetValue(tailnet, out var existing) ? existing : _logs[tailnet] = new TailnetLog();
            if (events.Any(e => e.Event.Id <= log.LastId))
            {
                throw new EventIdConflictException(tailnet);
            }

            foreach (var entry in events)
            {
                log.LastId = entry.Event.Id;
                if (entry.Once is { } once && !log.Once.Add(once))
                {
                    continue;
                }

                log.Events.AddLast(entry);
                if (log.Events.Count > options.Value.MemoryCapacity)
                {
                    Forget(log, log.Events.First!.Value);
                }
            }
        }

        return Task.CompletedTask;
    }

    public Task<AuditEvent[]> ReadAsync(string tailnet, EventQuery query)
    {
        lock (_lock)
        {
            if (!_logs.TryGetValue(tailnet, out var log))
            {
                return Task.FromResult(Array.Empty<AuditEvent>());
            }

            var events = query.Newest ? log.Events.Reverse().Select(e => e.Event) : log.Events.Select(e => e.Event);
            return Task.FromResult(events
                .Where(e => e.Id > query.After
                    && (query.Type is null || EventTypes.Matches(query.Type, e.Type))
                    && (query.NodeId is null || e.NodeId == query.NodeId))
                .Take(query.Limit)
                .ToArray());
        }
    }

    public Task<int> PruneAsync(DateTimeOffset before, CancellationToken cancellationToken)
    {
        var pruned = 0;
        lock (_lock)
        {
            foreach (var log in _logs.Values)
            {
                while (log.Events.First is { } first && first.Value.Event.Time < before)
                {
                    Forget(log, first.Value);
                    pruned++;
                }
            }
        }

        return Task.FromResult(pruned);
    }

    private static void Forget(TailnetLog log, (AuditEvent Event, string? Once) entry)
    {
        log.Events.RemoveFirst();
        if (entry.Once is { } once)
        {
            log.Once.Remove(once);
        }
    }
}
