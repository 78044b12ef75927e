using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace EphemeralOrleans.Grains.Events;

/// <summary>Deletes audit events older than <see cref="EventOptions.Retention"/>, every <see cref="EventOptions.PruneInterval"/>.
/// Every silo prunes; a delete that finds nothing costs an index probe.</summary>
public sealed partial class EventPruner(IEventStore store, IOptions<EventOptions> options, TimeProvider time, ILogger<EventPruner> logger)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.PruneInterval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    if (await store.PruneAsync(time.GetUtcNow() - options.Value.Retention, stoppingToken) is > 0 and var pruned)
                    {
                        LogPruned(logger, pruned, options.Value.Retention);
                    }
                }
                catch (Exception exception) when (exception is not OperationCanceledException)
                {
                    LogPruneFailed(logger, exception);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Pruned {Count} audit events older than {Retention}")]
    private static partial void LogPruned(ILogger logger, int count, TimeSpan retention);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not prune old audit events; the next interval tries again")]
    private static partial void LogPruneFailed(ILogger logger, Exception exception);
}
