namespace EphemeralOrleans.Grains.Hosting;

public enum StorageProvider
{
    Memory,
    Postgres,
}

/// <summary><c>Storage:*</c> and <c>ConnectionStrings:Postgres</c>.</summary>
public sealed class StorageOptions
{
    public const string Section = "Storage";

    public StorageProvider Provider { get; set; } = StorageProvider.Memory;

    public bool InitializeSchema { get; set; } = true;
}

/// <summary><c>Silo:*</c>: ports and the address a silo publishes in cluster membership.</summary>
public sealed class SiloOptions
{
    public const string Section = "Silo";

    public int Port { get; set; } = 11111;

    public int GatewayPort { get; set; } = 30000;

    public string? AdvertisedAddress { get; set; }

    /// <summary>Lowers Orleans' one-minute minimum reminder period (tests only need this).</summary>
    public TimeSpan? MinimumReminderPeriod { get; set; }

    /// <summary>A standalone silo serves <c>/metrics</c> and <c>/healthz</c> on this port (all interfaces) when set; a
    /// gateway serves its own, and its co-hosted silo's, on its HTTP endpoint.</summary>
    public int? MetricsPort { get; set; }

    /// <summary>How often each silo probes the others, and how long it waits for an answer (Orleans' default is 5 s).
    /// A silo killed outright misses <see cref="MissedProbesLimit"/> probes in a row and is then declared dead: about
    /// 3 s at these defaults, against 13–14 s at Orleans'. Until then, calls routed to it fail.</summary>
    public TimeSpan ProbeTimeout { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Missed probes in a row that make a silo suspect another (Orleans' default, 3).</summary>
    public int MissedProbesLimit { get; set; } = 3;
}
