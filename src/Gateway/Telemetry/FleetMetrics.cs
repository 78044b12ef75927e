using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Validation;
using EphemeralOrleans.Gateway.Hosting;
using Microsoft.Extensions.Options;

namespace EphemeralOrleans.Gateway.Telemetry;

/// <summary>
/// Feeds the gateway's per-tailnet node gauges (<c>eo_tailnet_nodes</c>) in every mode, client mode included: every
/// <see cref="GatewayOptions.FleetMetricsInterval"/> it asks each tailnet's registry for its counts — one grain call per
/// tailnet, answered from the registry in memory — so a scrape costs nothing and nodes cost no call at all.
/// </summary>
public sealed partial class FleetMetrics(IGrainFactory grains, IOptions<GatewayOptions> options, TimeProvider time, ILogger<FleetMetrics> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.FleetMetricsInterval, time);
        try
        {
            do
            {
                try
                {
                    GatewayMetrics.Fleet(await PollAsync());
                }
                catch (Exception exception) when (exception is not OperationCanceledException)
                {
                    // The cluster is not reachable (yet): the gauges keep the last counts until the next poll.
                    LogPollFailed(logger, exception.Message);
                }
            }
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task<IReadOnlyDictionary<string, TailnetCounts>> PollAsync()
    {
        var tailnets = await grains.ListTailnetsAsync();
        var counts = await Task.WhenAll(tailnets.Select(t => grains.GetGrain<ITailnetGrain>(t).GetCounts()));
        return tailnets.Zip(counts).ToDictionary(p => p.First, p => p.Second, StringComparer.Ordinal);
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Could not poll the tailnets' node counts: {Reason}")]
    private static partial void LogPollFailed(ILogger logger, string reason);
}
