using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Model;
using Microsoft.Extensions.Options;

namespace EphemeralOrleans.Grains.Events;

/// <summary>How grains record audit events: into their tailnet's <see cref="IEventLogGrain"/>, or nowhere when
/// <see cref="EventOptions.Enabled"/> is off (then not even a call is made).</summary>
public sealed class AuditLog(IGrainFactory grains, IOptions<EventOptions> options)
{
    public Task AppendAsync(string tailnet, params EventDraft[] events) =>
        options.Value.Enabled ? grains.GetGrain<IEventLogGrain>(tailnet).Append(events) : Task.CompletedTask;
}
