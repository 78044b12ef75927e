using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace EphemeralOrleans.Grains.Identity;

/// <summary>
/// Deletes the records of expired tokens every minute, so the ledger holds at most the tokens still valid (an hour's
/// registrations at the default maximum lifetime). Every silo prunes; a delete that finds nothing costs an index probe.
/// </summary>
public sealed partial class TokenUsePruner(ITokenUseStore uses, TimeProvider time, ILogger<TokenUsePruner> logger) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromMinutes(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    if (await uses.PruneAsync(time.GetUtcNow(), stoppingToken) is > 0 and var pruned)
                    {
                        LogPruned(logger, pruned);
                    }
                }
                catch (Exception exception) when (exception is not OperationCanceledException)
                {
                    // The next minute tries again; an expired record refuses nothing meanwhile.
                    LogPruneFailed(logger, exception);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Pruned {Count} records of expired ID tokens")]
    private static partial void LogPruned(ILogger logger, int count);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not prune the records of expired ID tokens")]
    private static partial void LogPruneFailed(ILogger logger, Exception exception);
}
