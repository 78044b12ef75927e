using EphemeralOrleans.Contracts.Model;
using Orleans.Concurrency;

namespace EphemeralOrleans.Contracts.Grains;

/// <summary>
/// A tailnet's audit log (keyed by the tailnet's name): append-only, numbered 1, 2, 3… in the order of appending (ids
/// only grow; a failed write can leave a gap). Appends are group-committed; a caller is answered once its events are
/// durable, and a reader only ever sees a prefix of the log's committed order.
/// </summary>
[Alias("eo.IEventLogGrain")]
public interface IEventLogGrain : IGrainWithStringKey
{
    /// <summary>Appends events in the given order; completes once they are durable. An event whose
    /// <see cref="EventDraft.Once"/> was recorded before is dropped.</summary>
    [Alias("Append")]
    Task Append(EventDraft[] events);

    /// <summary>The id of the newest event appended (committed or not): later events get greater ids.</summary>
    [AlwaysInterleave]
    [Alias("LastId")]
    Task<long> LastId();

    /// <summary>Events after <see cref="EventQuery.After"/>, oldest first, that match the query.</summary>
    [ReadOnly, AlwaysInterleave]
    [Alias("Read")]
    Task<AuditEvent[]> Read(EventQuery query);
}
