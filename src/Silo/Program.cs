using EphemeralOrleans.Grains.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;

// A standalone silo: Storage:Provider=Postgres for a cluster (ADO.NET clustering, storage and reminders), ports and
// advertised address from Silo:*. Gateways join it with Gateway:Mode=Client.
var builder = Host.CreateApplicationBuilder(args);
builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
{
    ["Logging:LogLevel:Orleans"] = "Warning",
    ["Logging:LogLevel:Polly"] = "Warning",
});
builder.UseOrleans(silo => silo.AddEphemeralSilo(builder.Configuration));
if (builder.Configuration.GetValue<int?>("Silo:MetricsPort") is { } metricsPort)
{
    builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics.AddEphemeralMeters()
        .AddPrometheusHttpListener(o => (o.Host, o.Port) = ("*", metricsPort)));
}

// Longer than Orleans' own graceful shutdown, so activations and reminders are handed over before the process ends.
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(45));

using var host = builder.Build();
var logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("EphemeralOrleans.Silo");
await EphemeralHosting.PrepareStorageAsync(builder.Configuration, logger);
await host.RunAsync();
