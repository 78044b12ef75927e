using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Grains.Common;
using Microsoft.Extensions.Logging;
using Orleans.Concurrency;

namespace EphemeralOrleans.Grains.Events;

/// <summary>
/// A tailnet's audit log (see <see cref="IEventLogGrain"/>). Numbers events in one turn, so ids follow the order of
/// appending; writes are group-committed, one batch at a time, so the store only ever holds a prefix of that order.
/// Continues from the store's last id on activation; should another activation have written meanwhile (a silo
/// declared dead too early), the taken id fails the batch, which is renumbered once from the store and written again.
/// </summary>
[Reentrant]
public sealed partial class EventLogGrain : Grain, IEventLogGrain
{
    private readonly IEventStore _store;
    private readonly IGrainFactory _grains;
    private readonly TimeProvider _time;
    private readonly ILogger<EventLogGrain> _logger;
    private readonly GroupCommit _commit;
    private List<(EventDraft Draft, DateTimeOffset Time)> _pending = [];
    private long _lastId;

    public EventLogGrain(IEventStore store, IGrainFactory grains, TimeProvider time, ILogger<EventLogGrain> logger)
    {
        _store = store;
        _grains = grains;
        _time = time;
        _logger = logger;
        _commit = new GroupCommit(WriteAsync);
    }

    private string Tailnet => this.GetPrimaryKeyString();

    public override async Task OnActivateAsync(CancellationToken cancellationToken) => _lastId = await _store.LastIdAsync(Tailnet);

    public Task Append(EventDraft[] events)
    {
        if (events.Length == 0)
        {
            return Task.CompletedTask;
        }

        var now = _time.GetUtcNow();
        _pending.AddRange(events.Select(e => (e, now)));
        return _commit.Request();
    }

    public Task<AuditEvent[]> Read(EventQuery query) => _store.ReadAsync(Tailnet, query);

    public Task<long> LastId() => Task.FromResult(_lastId + _pending.Count);

    private async Task WriteAsync()
    {
        var batch = _pending;
        _pending = [];
        try
        {
            await _store.AppendAsync(Tailnet, Number(batch));
        }
        catch (EventIdConflictException)
        {
            LogRenumbered(Tailnet, _lastId);
            _lastId = Math.Max(_lastId, await _store.LastIdAsync(Tailnet));
            await _store.AppendAsync(Tailnet, Number(batch));
        }

        // Deliveries follow the log; a tailnet without webhook endpoints answers at once.
        _ = _grains.GetGrain<IWebhookGrain>(Tailnet).Wake();
    }

    private List<(AuditEvent Event, string? Once)> Number(List<(EventDraft Draft, DateTimeOffset Time)> batch) =>
        batch.Select(p => (new AuditEvent(++_lastId, p.Time, p.Draft.Type, p.Draft.Actor, p.Draft.Target, p.Draft.NodeId, p.Draft.Data), p.Draft.Once))
            .ToList();

    [LoggerMessage(Level = LogLevel.Warning, Message = "Audit log of tailnet {Tailnet}: event id after {LastId} was taken by another activation; renumbering")]
    private partial void LogRenumbered(string tailnet, long lastId);
}
