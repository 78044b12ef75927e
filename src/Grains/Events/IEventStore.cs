using EphemeralOrleans.Contracts.Model;

namespace EphemeralOrleans.Grains.Events;

/// <summary>Where audit events are kept: PostgreSQL's <c>eo_events</c>, or the embedded mode's memory.</summary>
public interface IEventStore
{
    /// <summary>The highest id the tailnet's log holds (0 when empty): where a new activation of its log continues.</summary>
    Task<long> LastIdAsync(string tailnet);

    /// <summary>Writes numbered events atomically; those whose <c>once</c> the tailnet already holds are skipped.
    /// Throws <see cref="EventIdConflictException"/> when an id is taken (another activation of the log wrote it).</summary>
    Task AppendAsync(string tailnet, IReadOnlyList<(AuditEvent Event, string? Once)> events);

    Task<AuditEvent[]> ReadAsync(string tailnet, EventQuery query);

    /// <summary>Deletes events older than <paramref name="before"/> in every tailnet, except what numbering needs
    /// (<see cref="LastIdAsync"/> never goes back); how many.</summary>
    Task<int> PruneAsync(DateTimeOffset before, CancellationToken cancellationToken);
}

/// <summary>An event id already in the store: the log's numbering must restart from the store's last id.</summary>
public sealed class EventIdConflictException(string tailnet) : Exception($"An event id of tailnet '{tailnet}' is taken.");

/// <summary><c>Events:*</c>.</summary>
public sealed class EventOptions
{
    public const string Section = "Events";

    /// <summary>Off: nothing is recorded (and webhooks get nothing); the log keeps what it has.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>How long events are kept (90 days); older ones are pruned in the background.</summary>
    public TimeSpan Retention { get; set; } = TimeSpan.FromDays(90);

    /// <summary>How often the pruner runs.</summary>
    public TimeSpan PruneInterval { get; set; } = TimeSpan.FromHours(1);

    /// <summary>The embedded mode keeps at most this many events per tailnet in memory (the oldest go first).</summary>
    public int MemoryCapacity { get; set; } = 10_000;
}
