namespace EphemeralOrleans.Gateway.Hosting;

public enum GatewayMode
{
    /// <summary>Co-hosts a silo in this process.</summary>
    Embedded,

    /// <summary>Joins the silo cluster found through <c>ConnectionStrings:Postgres</c> as an Orleans client.</summary>
    Client,
}

/// <summary><c>Gateway:*</c>.</summary>
public sealed class GatewayOptions
{
    public const string Section = "Gateway";

    public GatewayMode Mode { get; set; } = GatewayMode.Embedded;

    /// <summary>The gRPC address agents are told to use; defaults to the <c>Grpc</c> Kestrel endpoint.</summary>
    public string? PublicGrpcUrl { get; set; }

    /// <summary>Registrations in flight at once; more wait their turn (unbounded callers starve Orleans timers).</summary>
    public int MaxConcurrentRegistrations { get; set; } = 64;

    /// <summary>Messages buffered per map stream; a stream that falls further behind is reset with a fresh full map.</summary>
    public int StreamBufferSize { get; set; } = 256;

    /// <summary>How long a registration is retried inside the gateway when a silo goes away under it (the cluster
    /// declares a killed silo dead within seconds and reroutes); past it, the caller gets 503.</summary>
    public TimeSpan ClusterRetryWindow { get; set; } = TimeSpan.FromSeconds(20);

    /// <summary>How long one attempt of such a registration is waited for before it is tried again (a call forwarded to
    /// a silo that died is otherwise answered only by Orleans' 30 s response timeout).</summary>
    public TimeSpan ClusterAttemptTimeout { get; set; } = TimeSpan.FromSeconds(8);

    /// <summary>How far a registration proof's timestamp may be from this gateway's clock, either way.</summary>
    public TimeSpan ProofClockWindow { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>How often the per-tailnet node gauges (<c>eo_tailnet_nodes</c>) are refreshed from the registries.</summary>
    public TimeSpan FleetMetricsInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Largest request body accepted, in bytes.</summary>
    public long MaxRequestBodyBytes { get; set; } = 64 * 1024;

    /// <summary>The gRPC URL agents are told to dial.</summary>
    public string? GrpcUrl(IConfiguration configuration) => PublicGrpcUrl ?? configuration["Kestrel:Endpoints:Grpc:Url"];
}

/// <summary><c>Admin:*</c>.</summary>
public sealed class AdminOptions
{
    public const string Section = "Admin";

    /// <summary>Bearer key for the admin API; generated and printed at start when unset.</summary>
    public string? ApiKey { get; set; }

    /// <summary>Wrong admin keys one source may present before it is throttled (see <c>AdminGuard</c>).</summary>
    public int FailuresBeforeThrottle { get; set; } = 5;

    /// <summary>The longest a throttled source waits; each further wrong key doubles its wait, from 1 s, up to this.</summary>
    public TimeSpan MaxThrottle { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>A source's wrong keys are forgotten after this long without one.</summary>
    public TimeSpan FailureMemory { get; set; } = TimeSpan.FromMinutes(15);
}
