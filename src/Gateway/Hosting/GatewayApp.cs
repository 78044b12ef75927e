using EphemeralOrleans.Contracts.Validation;
using EphemeralOrleans.Gateway.Application;
using EphemeralOrleans.Gateway.Grpc;
using EphemeralOrleans.Gateway.Http;
using EphemeralOrleans.Gateway.Identity;
using EphemeralOrleans.Gateway.Map;
using EphemeralOrleans.Gateway.Relay;
using EphemeralOrleans.Gateway.Telemetry;
using EphemeralOrleans.Gateway.WebConsole;
using EphemeralOrleans.Grains.Hosting;
using Grpc.AspNetCore.Server.Model;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Configuration.Memory;
using OpenTelemetry.Metrics;
using Orleans.Dashboard;

namespace EphemeralOrleans.Gateway.Hosting;

/// <summary>Builds the gateway: the same code runs from <c>Program</c> and from the integration tests.</summary>
public static partial class GatewayApp
{
    /// <summary>Defaults of the public contract; any configuration source overrides them.</summary>
    private static readonly Dictionary<string, string?> Defaults = new()
    {
        ["Kestrel:Endpoints:Http:Url"] = "http://127.0.0.1:8080",
        ["Kestrel:Endpoints:Http:Protocols"] = "Http1",
        ["Kestrel:Endpoints:Grpc:Url"] = "http://127.0.0.1:8081",
        ["Kestrel:Endpoints:Grpc:Protocols"] = "Http2",
        ["Logging:LogLevel:Default"] = "Information",
        ["Logging:LogLevel:Microsoft.AspNetCore"] = "Warning",
        ["Logging:LogLevel:Orleans"] = "Warning",
        ["Logging:LogLevel:Polly"] = "Warning",
        // With the cluster unreachable, the Orleans client warns once per rejected call, with a stack trace: a flood.
        ["Logging:LogLevel:Orleans.Messaging"] = "Error",
        // A log sink that cannot keep up loses lines rather than stalling the threads that serve agents.
        ["Logging:Console:QueueFullMode"] = "DropWrite",
    };

    public static WebApplication Build(string[] args, Action<IConfigurationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(args);
        builder.Configuration.Sources.Insert(0, new MemoryConfigurationSource { InitialData = Defaults });
        configure?.Invoke(builder.Configuration);

        var configuration = builder.Configuration;
        builder.WebHost.ConfigureKestrel((context, kestrel) => GrpcPort.MarkGrpcEndpoint(kestrel, context.Configuration));
        RequireCertificates(configuration);
        var gatewayOptions = configuration.GetSection(GatewayOptions.Section).Get<GatewayOptions>() ?? new GatewayOptions();
        builder.Services.Configure<GatewayOptions>(configuration.GetSection(GatewayOptions.Section));
        if (gatewayOptions.FleetMetricsInterval <= TimeSpan.Zero)
        {
            throw new InvalidOperationException("Gateway:FleetMetricsInterval must be positive.");
        }

        builder.Services.AddEphemeralOptions(configuration);

        if (gatewayOptions.Mode == GatewayMode.Embedded)
        {
            builder.UseOrleans(silo => silo.AddEphemeralSilo(configuration));
        }
        else
        {
            var connectionString = EphemeralHosting.PostgresConnectionString(configuration);
            builder.UseOrleansClient(client => client
                .AddDashboard()
                // Notice silos that left (or died) within seconds rather than Orleans' default minute.
                .Configure<Orleans.Configuration.GatewayOptions>(o => o.GatewayListRefreshPeriod = TimeSpan.FromSeconds(5))
                .Configure<Orleans.Configuration.ClusterOptions>(o =>
                {
                    o.ClusterId = configuration["Cluster:Id"] ?? EphemeralHosting.ServiceId;
                    o.ServiceId = EphemeralHosting.ServiceId;
                })
                .UseAdoNetClustering(o =>
                {
                    o.Invariant = EphemeralHosting.NpgsqlInvariant;
                    o.ConnectionString = connectionString;
                }));
        }

        var adminKey = configuration["Admin:ApiKey"];
        var generatedAdminKey = string.IsNullOrEmpty(adminKey);
        if (generatedAdminKey)
        {
            adminKey = "eo-admin-" + Secrets.Base62(32);
        }
        else if (AdminKey.Weakness(adminKey!) is { } weakness)
        {
            throw new InvalidOperationException($"Admin:ApiKey is too weak: {weakness}. Use a random secret, e.g. `openssl rand -base64 32`, or leave it unset to have one generated.");
        }

        builder.Services.AddSingleton(new AdminKey(adminKey!));
        builder.Services.AddOptions<AdminOptions>().Bind(configuration.GetSection(AdminOptions.Section))
            .Validate(o => o.FailuresBeforeThrottle >= 0 && o.MaxThrottle > TimeSpan.Zero && o.FailureMemory > TimeSpan.Zero,
                "Admin:FailuresBeforeThrottle must not be negative; Admin:MaxThrottle and Admin:FailureMemory must be positive.")
            .ValidateOnStart();
        builder.Services.AddSingleton<AdminGuard>();
        var rateLimits = configuration.GetSection(RateLimitOptions.Section).Get<RateLimitOptions>() ?? new RateLimitOptions();
        if (new[] { rateLimits.RegistrationsPerSecond, rateLimits.RegistrationBurst, rateLimits.RegistrationsPerKeyPerSecond, rateLimits.RegistrationBurstPerKey,
                rateLimits.MapOpensPerSecond, rateLimits.MapOpenBurst, rateLimits.AdminRequestsPerSecond, rateLimits.AdminBurst, rateLimits.MaxStreamsPerNode }.Any(v => v < 1))
        {
            throw new InvalidOperationException("RateLimits:* rates, bursts and MaxStreamsPerNode must be at least 1 (RateLimits:Enabled=false turns the limits off).");
        }

        builder.Services.Configure<RateLimitOptions>(configuration.GetSection(RateLimitOptions.Section));
        builder.Services.AddSingleton<RateLimits>();
        builder.Services.AddRateLimiter(limiter => RateLimits.Configure(limiter, rateLimits));
        builder.Services.AddSingleton<ControlKey>();
        builder.Services.AddSingleton<IdSeal>();
        builder.Services.AddSingleton<ControlPlane>();
        builder.Services.Configure<IdentityOptions>(configuration.GetSection(IdentityOptions.Section));
        builder.Services.AddSingleton<IdTokenValidator>();
        builder.Services.AddSingleton<GatewaySessionLease>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<GatewaySessionLease>());
        builder.Services.AddSingleton<MapHub>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<MapHub>());
        builder.Services.AddOptions<RelayOptions>().Bind(configuration.GetSection("Relay"));
        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<RelayHub>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<RelayHub>());
        builder.Services.AddHostedService<FleetMetrics>();
        builder.Services.AddSingleton<ClusterReadiness>();
        builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics.AddEphemeralMeters()
            // Every scrape sees the current values (the exporter caches responses for 300 ms by default).
            .AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0));
        builder.Services.AddGrpc(o =>
        {
            o.Interceptors.Add<GrpcErrors>();
            o.MaxReceiveMessageSize = (int)gatewayOptions.MaxRequestBodyBytes;
        });
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IServiceMethodProvider<ControlGrpcService>, ControlServiceBinding>());
        builder.Services.AddGrpcReflection();
        builder.Services.AddGrpcHealthChecks().AddCheck<ClusterReadiness>("cluster");
        // Sent on HTTPS responses only; loopback is not excluded (a TLS gateway on loopback asked for it too).
        builder.Services.AddHsts(o =>
        {
            o.MaxAge = TimeSpan.FromDays(365);
            o.ExcludedHosts.Clear();
        });
        builder.Services.AddProblemDetails();
        builder.Services.AddApiDocument();
        builder.Services.AddExceptionHandler<ProblemExceptionHandler>();
        var keyRing = KeyRingEncryption.Load(configuration.GetSection(KeyRingOptions.Section).Get<KeyRingOptions>() ?? new KeyRingOptions(),
            persisted: EphemeralHosting.Storage(configuration).Provider == StorageProvider.Postgres);
        builder.Services.AddSingleton(keyRing);
        builder.Services.AddAdminConsole(keyRing);

        var app = builder.Build();
        app.UseGrpcOnlyOnGrpcPort();
        app.UseHsts();
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        // Before anything that reaches the cluster: a flood is refused here.
        app.UseRateLimiter();
        // The relay's WebSockets; pings keep NATs and proxies from closing an idle one.
        app.UseWebSockets(new WebSocketOptions { KeepAliveInterval = TimeSpan.FromSeconds(25) });
        app.UseAdminConsole();
        // Explicitly, after the gRPC port's check: WebApplication would otherwise put routing, authentication and
        // authorization first, and the console's authorization would answer there (a redirect to its sign-in) before it.
        app.UseRouting();
        app.UseAuthentication();
        app.UseAuthorization();
        app.MapHealth();
        app.MapAgentApi();
        app.MapAdminApi();
        app.MapApiDocument();
        app.MapGrpcService<ControlGrpcService>();
        app.MapGrpcService<AdminGrpcService>();
        app.MapGrpcReflectionService();
        app.MapGrpcHealthChecksService();
        app.MapPrometheusScrapingEndpoint("/metrics");
        app.MapDashboard();
        app.MapAdminConsole();

        app.Lifetime.ApplicationStarted.Register(() => PrintBanner(app, gatewayOptions, generatedAdminKey ? adminKey : null));
        return app;
    }

    /// <summary>An https:// endpoint needs a certificate; Kestrel's own message would send the operator to the
    /// development certificate, which a server must not use.</summary>
    private static void RequireCertificates(IConfiguration configuration)
    {
        var hasDefault = configuration["Kestrel:Certificates:Default:Path"] is { Length: > 0 } || configuration["Kestrel:Certificates:Default:Subject"] is { Length: > 0 };
        foreach (var endpoint in configuration.GetSection("Kestrel:Endpoints").GetChildren())
        {
            if (endpoint["Url"]?.StartsWith("https:", StringComparison.OrdinalIgnoreCase) == true && !hasDefault
                && endpoint.GetSection("Certificate").GetChildren().All(setting => string.IsNullOrEmpty(setting.Value)))
            {
                throw new InvalidOperationException($"Kestrel:Endpoints:{endpoint.Key}:Url is https:// but no certificate is configured: set Kestrel:Certificates:Default:Path "
                    + "and Kestrel:Certificates:Default:KeyPath to a PEM certificate and its key (or the endpoint's own Certificate:Path and Certificate:KeyPath).");
            }
        }
    }

    /// <summary>Prepares storage (the PostgreSQL schema) and runs until shut down.</summary>
    public static async Task RunAsync(WebApplication app)
    {
        await EphemeralHosting.PrepareStorageAsync(app.Configuration, app.Logger, app.Lifetime.ApplicationStopping);
        await app.RunAsync();
    }

    /// <summary>The operator's first view: where to connect, the admin key if it was generated, and what the storage keeps.
    /// Written to the console, not the log, so the key never lands in log storage.</summary>
    private static void PrintBanner(WebApplication app, GatewayOptions options, string? generatedAdminKey)
    {
        var configuration = app.Configuration;
        var storage = EphemeralHosting.Storage(configuration).Provider;
        Console.WriteLine();
        Console.WriteLine($"EphemeralOrleans gateway ({options.Mode}, storage: {storage})");
        Console.WriteLine($"  HTTP API, admin: {configuration["Kestrel:Endpoints:Http:Url"]}  (bound: {string.Join(", ", app.Urls)})");
        Console.WriteLine($"  gRPC:            {options.GrpcUrl(configuration)}");
        Console.WriteLine($"  Web console:     {configuration["Kestrel:Endpoints:Http:Url"]}{AdminConsole.Path}  (sign in with the admin API key)");
        if (generatedAdminKey is not null)
        {
            Console.WriteLine($"  Admin API key (generated; set Admin:ApiKey to choose one): {generatedAdminKey}");
        }

        if (storage == StorageProvider.Memory)
        {
            Console.WriteLine("  State is in memory and is lost when this process exits (Storage:Provider=Postgres keeps it).");
        }

        Console.WriteLine();
    }
}
