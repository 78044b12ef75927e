namespace EphemeralOrleans.Contracts;

/// <summary>The one meter name of every EphemeralOrleans instrument, in silos and gateways alike.</summary>
public static class Telemetry
{
    public const string MeterName = "EphemeralOrleans";
}
