using EphemeralOrleans.Grains.Hosting;
using OpenTelemetry.Metrics;

// A standalone silo: Storage:Provider=Postgres for a cluster (ADO.NET clustering, storage and reminders), ports and
// advertised address from Silo:*. Gateways join it with Gateway:Mode=Client. It serves /healthz and /metrics on
// Silo:MetricsPort (all interfaces); without it, on a loopback port of the system's choosing.
var builder = WebApplication.CreateBuilder(args);
builder.Configuration.Sources.Insert(0, new Microsoft.Extensions.Configuration.Memory.MemoryConfigurationSource
{
    InitialData = new Dictionary<string, string?>
    {
        ["Logging:LogLevel:Orleans"] = "Warning",
        ["Logging:LogLevel:Polly"] = "Warning",
        ["Logging:LogLevel:Microsoft.AspNetCore"] = "Warning",
        // A log sink that cannot keep up loses lines rather than stalling grain turns.
        ["Logging:Console:QueueFullMode"] = "DropWrite",
    },
});
builder.WebHost.UseUrls(builder.Configuration.GetValue<int?>("Silo:MetricsPort") is { } metricsPort
    ? $"http://0.0.0.0:{metricsPort}"
    : "http://127.0.0.1:0");
builder.UseOrleans(silo => silo.AddEphemeralSilo(builder.Configuration));
builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics.AddEphemeralMeters()
            // Every scrape sees the current values (the exporter caches responses for 300 ms by default).
            .AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0));
// Longer than Orleans' own graceful shutdown, so activations and reminders are handed over before the process ends.
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(45));

var app = builder.Build();
app.MapGet("/healthz", () => Results.Ok(new { status = "ok" }));
app.MapPrometheusScrapingEndpoint("/metrics");
await EphemeralHosting.PrepareStorageAsync(builder.Configuration, app.Logger);
await app.RunAsync();
