using System.Diagnostics.Metrics;

namespace EphemeralOrleans.Gateway.Telemetry;

/// <summary>What a gateway measures: registrations it served, its open map streams, the deltas it sent and how long a
/// change took from the registry to an agent's stream.</summary>
public static class GatewayMetrics
{
    private static readonly Meter Meter = new(Contracts.Telemetry.MeterName);

    private static readonly Counter<long> Registrations = Meter.CreateCounter<long>(
        "eo.gateway.registrations", "{request}", "Registration requests, by outcome (ok or the problem code).");

    private static readonly UpDownCounter<long> Streams = Meter.CreateUpDownCounter<long>(
        "eo.gateway.map_streams", "{stream}", "Map streams open on this gateway.");

    private static readonly Counter<long> Deltas = Meter.CreateCounter<long>(
        "eo.gateway.deltas_sent", "{message}", "Deltas written to agents' map streams.");

    private static readonly Histogram<double> Delivery = Meter.CreateHistogram<double>(
        "eo.gateway.change_delivery", "s", "From a registry change (silo clock) to its delta written to a stream (gateway clock).",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10] });

    private static readonly UpDownCounter<long> RelayConnections = Meter.CreateUpDownCounter<long>(
        "eo.gateway.relay_connections", "{connection}", "Relay connections open on this gateway.");

    private static readonly Counter<long> RelayPackets = Meter.CreateCounter<long>(
        "eo.gateway.relay_packets", "{packet}", "Packets the relay received, by outcome: delivered (to a connection here), forwarded (to another gateway), or why dropped.");

    private static readonly Counter<long> RelayThrottles = Meter.CreateCounter<long>(
        "eo.gateway.relay_throttled", "{pause}", "Pauses in reading a relay connection whose sender exceeded its rate.");

    private static readonly Counter<long> RelayBytes = Meter.CreateCounter<long>(
        "eo.gateway.relay_bytes", "By", "Payload bytes the relay delivered.");

    private static readonly Counter<long> ConsoleDeviceListUpdates = Meter.CreateCounter<long>(
        "eo.gateway.console_device_list_updates", "{update}", "Updates pushed to the console's live device lists: reset (the whole list, when a page connects or after a resync) or delta (one batch of changes).");

    private static readonly Counter<long> AdminAuthFailures = Meter.CreateCounter<long>(
        "eo.gateway.admin_auth_failures", "{attempt}", "Wrong admin keys, by surface (admin_api, admin_grpc, console, dashboard) and outcome: refused, or throttled (not compared).");

    private static readonly Counter<long> RateLimitRefusals = Meter.CreateCounter<long>(
        "eo_gateway_rate_limited_total", description: "Requests refused by a flood limit, by limit (registration, registration_key, map, admin, streams_per_node).");

    private static readonly Counter<long> ClusterRetries = Meter.CreateCounter<long>(
        "eo.gateway.cluster_retries", "{retry}", "Calls retried inside the gateway because a silo went away under them, by failure.");

    public static void ClusterRetry(string failure) => ClusterRetries.Add(1, new KeyValuePair<string, object?>("failure", failure));

    public static void RateLimited(string limit) => RateLimitRefusals.Add(1, new KeyValuePair<string, object?>("limit", limit));

    public static void AdminAuthFailure(string surface, string outcome) =>
        AdminAuthFailures.Add(1, new KeyValuePair<string, object?>("surface", surface), new KeyValuePair<string, object?>("outcome", outcome));

    public static void RelayOpened() => RelayConnections.Add(1);

    /// <summary>A sender over its rate: its connection is not read for a while.</summary>
    public static void RelayThrottled() => RelayThrottles.Add(1);

    public static void RelayClosed() => RelayConnections.Add(-1);

    public static void RelayPacket(string outcome, int bytes)
    {
        RelayPackets.Add(1, new KeyValuePair<string, object?>("outcome", outcome));
        if (outcome == "delivered")
        {
            RelayBytes.Add(bytes);
        }
    }

    /// <summary>A registration's outcome ("ok" or the refusal's code), by credential: an auth key or an OIDC token.</summary>
    public static void Registration(string outcome, string credential = "key") =>
        Registrations.Add(1, new KeyValuePair<string, object?>("outcome", outcome), new KeyValuePair<string, object?>("credential", credential));

    public static void ConsoleDeviceListUpdate(string kind) => ConsoleDeviceListUpdates.Add(1, new KeyValuePair<string, object?>("kind", kind));

    public static void StreamOpened() => Streams.Add(1);

    public static void StreamClosed() => Streams.Add(-1);

    public static void DeltaSent(TimeSpan sinceChange)
    {
        Deltas.Add(1);
        Delivery.Record(Math.Max(0, sinceChange.TotalSeconds));
    }

    private static readonly Histogram<double> KeepAliveLag = Meter.CreateHistogram<double>(
        "eo.gateway.keepalive_lag", "s", "How late a keepalive was queued past the moment its stream had been silent for Map:KeepAliveInterval.",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10] });

    private static readonly Histogram<double> TailnetRemovalLag = Meter.CreateHistogram<double>(
        "eo.tailnet.removal_lag", "s", "How long after its inactivity deadline an ephemeral node was removed, by tailnet, as the registries count them (polled).",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = Contracts.Telemetry.RemovalLagBuckets });

    public static void KeepAliveQueued(TimeSpan late) => KeepAliveLag.Record(Math.Max(0, late.TotalSeconds));

    // The fleet as the latest FleetMetrics poll saw it (one gateway per process; tests may start several in turn).
    private static volatile IReadOnlyDictionary<string, Contracts.Model.TailnetCounts> _fleet = new Dictionary<string, Contracts.Model.TailnetCounts>();

    static GatewayMetrics()
    {
        Meter.CreateObservableGauge("eo.tailnet.nodes", () => _fleet.SelectMany(t => new[]
        {
            Nodes(t.Key, "total", t.Value.Total),
            Nodes(t.Key, "online", t.Value.Online),
            Nodes(t.Key, "offline", t.Value.Total - t.Value.Online),
            Nodes(t.Key, "ephemeral", t.Value.Ephemeral),
            Nodes(t.Key, "pending_approval", t.Value.PendingApproval),
        }), "{node}", "Nodes of each tailnet by kind, as the cluster's registries count them (polled, not per scrape).");
        Meter.CreateObservableCounter("eo.tailnet.removals", () => _fleet.SelectMany(t => t.Value.Removals.Select((count, reason) =>
            new Measurement<long>(count, new KeyValuePair<string, object?>("tailnet", t.Key),
                new KeyValuePair<string, object?>("reason", ((Contracts.Model.RemovalReason)reason).ToString().ToLowerInvariant())))),
            "{node}", "Nodes removed, by tailnet and reason, as the registries count them since they were activated (polled).");
    }

    /// <summary>Replaces the fleet the gauges show, and records the removal lags the registries counted since the last poll.</summary>
    public static void Fleet(IReadOnlyDictionary<string, Contracts.Model.TailnetCounts> fleet)
    {
        var previous = _fleet;
        foreach (var (tailnet, counts) in fleet)
        {
            var before = previous.TryGetValue(tailnet, out var last) ? last.RemovalLagCounts : [];
            // A registry that restarted counts from zero again: all it counted is new.
            var restarted = counts.RemovalLagCounts.Length != before.Length || counts.RemovalLagCounts.Where((c, i) => c < before[i]).Any();
            var bounds = Contracts.Telemetry.RemovalLagBuckets;
            for (var bucket = 0; bucket < counts.RemovalLagCounts.Length; bucket++)
            {
                // Each bucket's new removals, recorded at its upper bound (they are counted in it, as they were).
                var added = counts.RemovalLagCounts[bucket] - (restarted ? 0 : before[bucket]);
                var value = bucket < bounds.Length ? bounds[bucket] : bounds[^1] * 2;
                for (var i = 0; i < added; i++)
                {
                    TailnetRemovalLag.Record(value, new KeyValuePair<string, object?>("tailnet", tailnet));
                }
            }
        }

        _fleet = fleet;
    }

    private static Measurement<int> Nodes(string tailnet, string kind, int count) =>
        new(count, new KeyValuePair<string, object?>("tailnet", tailnet), new KeyValuePair<string, object?>("kind", kind));
}
