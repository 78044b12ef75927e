using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Model;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace EphemeralOrleans.Grains.Events;

/// <summary>How grains record audit events: into their tailnet's <see cref="IEventLogGrain"/>, or nowhere when
/// <see cref="EventOptions.Enabled"/> is off (then not even a call is made).</summary>
public sealed partial class AuditLog(IGrainFactory grains, IOptions<EventOptions> options, ILogger<AuditLog> logger)
{
    /// <summary>Appends; a failure reaches the caller (a removal must not finish without its events).</summary>
    public Task AppendAsync(string tailnet, params EventDraft[] events) =>
        options.Value.Enabled ? grains.GetGrain<IEventLogGrain>(tailnet).Append(events) : Task.CompletedTask;

    /// <summary>Records the event of a change that is already durable: should the log be unreachable, the change stands
    /// and the event is lost, with a warning — the log records at most once what happened, never what did not.</summary>
    public async Task RecordAsync(string tailnet, EventDraft draft)
    {
        try
        {
            await AppendAsync(tailnet, draft);
        }
        catch (Exception exception)
        {
            LogEventLost(exception, draft.Type, draft.Target, tailnet);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Audit event {Type} of {Target} in tailnet {Tailnet} could not be recorded; the change stands")]
    private partial void LogEventLost(Exception exception, string type, string target, string tailnet);
}
