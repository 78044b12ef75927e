namespace EphemeralOrleans.Contracts;

/// <summary>The one meter name of every EphemeralOrleans instrument, in silos and gateways alike.</summary>
public static class Telemetry
{
    public const string MeterName = "EphemeralOrleans";

    /// <summary>The buckets (seconds) of removal lag past the inactivity deadline, wherever it is measured.</summary>
    public static readonly double[] RemovalLagBuckets = [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600];
}
