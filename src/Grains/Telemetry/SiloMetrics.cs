using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using EphemeralOrleans.Contracts.Model;

namespace EphemeralOrleans.Grains.Telemetry;

/// <summary>What the silo side measures: node counts of the tailnets active here, registrations, removals and how
/// late inactivity removals are past their deadline.</summary>
public static class SiloMetrics
{
    private static readonly Meter Meter = new(Contracts.Telemetry.MeterName);
    private static readonly ConcurrentDictionary<object, Func<(int Total, int Ephemeral, int Online)>> Tailnets = new();

    private static readonly Counter<long> Registrations = Meter.CreateCounter<long>(
        "eo.node.registrations", "{registration}", "Successful registrations, new nodes and re-registrations.");

    private static readonly Counter<long> Removals = Meter.CreateCounter<long>(
        "eo.node.removals", "{node}", "Nodes removed, by reason: logout, inactivity, admin.");

    private static readonly Histogram<double> RemovalLag = Meter.CreateHistogram<double>(
        "eo.node.removal_lag", "s", "How long after its inactivity deadline an ephemeral node was removed.",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = Contracts.Telemetry.RemovalLagBuckets });

    private static readonly Counter<long> SessionKeepalives = Meter.CreateCounter<long>(
        "eo.session.keepalive_calls", "{call}", "Grain calls made to keep map sessions alive (not to open or close them), by kind.");

    static SiloMetrics()
    {
        Meter.CreateObservableGauge("eo.nodes", () =>
        {
            var (total, ephemeral, online) = (0, 0, 0);
            foreach (var counts in Tailnets.Values)
            {
                var c = counts();
                (total, ephemeral, online) = (total + c.Total, ephemeral + c.Ephemeral, online + c.Online);
            }

            return new[]
            {
                new Measurement<int>(total, new KeyValuePair<string, object?>("kind", "total")),
                new Measurement<int>(ephemeral, new KeyValuePair<string, object?>("kind", "ephemeral")),
                new Measurement<int>(online, new KeyValuePair<string, object?>("kind", "online")),
            };
        }, "{node}", "Nodes of the tailnets whose registry is active on this silo.");
    }

    public static void Registered(bool ephemeral, bool again) =>
        Registrations.Add(1, new KeyValuePair<string, object?>("ephemeral", ephemeral), new KeyValuePair<string, object?>("again", again));

    public static void Removed(RemovalReason reason) =>
        Removals.Add(1, new KeyValuePair<string, object?>("reason", reason.ToString().ToLowerInvariant()));

    public static void SessionKeepalive(string kind) =>
        SessionKeepalives.Add(1, new KeyValuePair<string, object?>("kind", kind));

    public static void RemovedLate(TimeSpan lag) => RemovalLag.Record(Math.Max(0, lag.TotalSeconds));

    /// <summary>Counts a tailnet registry while it is active here; dispose when it deactivates.</summary>
    public static IDisposable Track(Func<(int Total, int Ephemeral, int Online)> counts)
    {
        var key = new object();
        Tailnets[key] = counts;
        return new Untrack(key);
    }

    private sealed class Untrack(object key) : IDisposable
    {
        public void Dispose() => Tailnets.TryRemove(key, out _);
    }
}
