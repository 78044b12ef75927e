using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using EphemeralOrleans.Contracts.Options;
using EphemeralOrleans.Contracts.Validation;
using EphemeralOrleans.Grains.Common;
using EphemeralOrleans.Grains.Events;
using EphemeralOrleans.Grains.Identity;
using EphemeralOrleans.Grains.Registry;
using EphemeralOrleans.Grains.Storage;
using EphemeralOrleans.Grains.Webhooks;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Metrics;
using Orleans.Dashboard;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Configuration;
using Orleans.Storage;

namespace EphemeralOrleans.Grains.Hosting;

/// <summary>How every EphemeralOrleans silo is put together, whether standalone or co-hosted by the gateway.</summary>
public static class EphemeralHosting
{
    public const string ServiceId = "ephemeral-orleans";
    public const string NpgsqlInvariant = "Npgsql";

    public static StorageOptions Storage(IConfiguration configuration) =>
        configuration.GetSection(StorageOptions.Section).Get<StorageOptions>() ?? new StorageOptions();

    /// <summary>
    /// <c>ConnectionStrings:Postgres</c>, tuned for the Orleans providers, which open a pooled connection per query and
    /// run the same few statements over and over: no session reset on each return to the pool (it would throw away
    /// the cached plans), and automatic preparation of repeated statements. Explicit settings in the string win.
    /// </summary>
    public static string PostgresConnectionString(IConfiguration configuration)
    {
        var configured = configuration.GetConnectionString("Postgres") is { Length: > 0 } connectionString
            ? connectionString
            : throw new InvalidOperationException("Storage:Provider is Postgres but ConnectionStrings:Postgres is not set.");
        var builder = new Npgsql.NpgsqlConnectionStringBuilder(configured);
        if (!ContainsKey(configured, "No Reset On Close", "NoResetOnClose"))
        {
            builder.NoResetOnClose = true;
        }

        if (!ContainsKey(configured, "Max Auto Prepare", "MaxAutoPrepare"))
        {
            builder.MaxAutoPrepare = 64;
            builder.AutoPrepareMinUsages = 2;
        }

        if (!ContainsKey(configured, "Multiplexing"))
        {
            builder.Multiplexing = true;
        }

        return builder.ConnectionString;

        static bool ContainsKey(string connectionString, params string[] keys) =>
            keys.Any(k => connectionString.Contains(k + "=", StringComparison.OrdinalIgnoreCase)
                || connectionString.Contains(k + " =", StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>Options shared by silos and gateways, bound from configuration and checked at start.</summary>
    public static IServiceCollection AddEphemeralOptions(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<EphemeralOptions>().Bind(configuration.GetSection(EphemeralOptions.Section))
            .Validate(o => o.InactivityTimeout >= TimeSpan.FromSeconds(2), "Ephemeral:InactivityTimeout must be at least 00:00:02.")
            .Validate(o => o.IpQuarantine >= TimeSpan.Zero, "Ephemeral:IpQuarantine must not be negative.")
            .ValidateOnStart();
        services.AddOptions<AddressOptions>().Bind(configuration.GetSection(AddressOptions.Section))
            .Validate(o => TryPool(o.Ipv4Prefix), "Addresses:Ipv4Prefix must be an IPv4 prefix (/10 to /30) inside 100.64.0.0/10.")
            .ValidateOnStart();
        services.AddOptions<MapOptions>().Bind(configuration.GetSection(MapOptions.Section))
            .Validate(o => o.KeepAliveInterval > TimeSpan.Zero && o.BatchWindow >= TimeSpan.Zero, "Map timings must be positive.")
            .ValidateOnStart();
        services.AddOptions<EventOptions>().Bind(configuration.GetSection(EventOptions.Section))
            .Validate(o => o.Retention > TimeSpan.Zero && o.PruneInterval > TimeSpan.Zero && o.MemoryCapacity > 0,
                "Events:Retention, Events:PruneInterval and Events:MemoryCapacity must be positive.")
            .ValidateOnStart();
        services.AddOptions<WebhookOptions>().Bind(configuration.GetSection(WebhookOptions.Section))
            .Validate(o => o.AttemptTimeout > TimeSpan.Zero && o.FirstRetryDelay > TimeSpan.Zero && o.MaxRetryDelay >= o.FirstRetryDelay
                && o.MaxAge > TimeSpan.Zero && o.PauseAfter > TimeSpan.Zero && o.ReminderPeriod > TimeSpan.Zero && o.MaxEndpoints > 0,
                "Webhooks:* timings must be positive (MaxRetryDelay at least FirstRetryDelay), MaxEndpoints at least 1.")
            .ValidateOnStart();
        services.TryAddSingleton<WebhookSender>();
        services.TryAddSingleton<AuditLog>();
        services.TryAddSingleton<Sessions.ConnectedNodes>();
        services.TryAddSingleton(sp => new AddressPool(sp.GetRequiredService<IOptions<AddressOptions>>().Value.Ipv4Prefix));
        services.TryAddSingleton(TimeProvider.System);
        // A storage failure in a silo must reach the gateway as what it is (and become a 503), not as a codec error.
        services.Configure<Orleans.Serialization.ExceptionSerializationOptions>(o => o.SupportedNamespacePrefixes.Add("Npgsql"));
        return services;
    }

    /// <summary>Configures a silo: clustering, storage and reminders from <c>Storage:Provider</c>, ports from <c>Silo:*</c>.</summary>
    public static ISiloBuilder AddEphemeralSilo(this ISiloBuilder silo, IConfiguration configuration)
    {
        var storage = Storage(configuration);
        var siloOptions = configuration.GetSection(SiloOptions.Section).Get<SiloOptions>() ?? new SiloOptions();
        silo.Services.AddEphemeralOptions(configuration);
        silo.Services.AddHostedService<Sessions.SessionConfirmer>();
        // Every silo feeds the Orleans dashboard; gateways serve it at /dashboard.
        silo.AddDashboard();
        silo.Configure<ClusterOptions>(o =>
        {
            o.ClusterId = configuration["Cluster:Id"] ?? ServiceId;
            o.ServiceId = ServiceId;
        });
        if (siloOptions.ProbeTimeout <= TimeSpan.Zero || siloOptions.MissedProbesLimit < 1)
        {
            throw new InvalidOperationException("Silo:ProbeTimeout must be positive and Silo:MissedProbesLimit at least 1.");
        }

        // Failure detection (see SiloOptions.ProbeTimeout); a silo that is itself overloaded stretches its probes'
        // timeout (Orleans' ExtendProbeTimeoutDuringDegradation) rather than voting healthy silos dead.
        silo.Configure<ClusterMembershipOptions>(o =>
        {
            o.ProbeTimeout = siloOptions.ProbeTimeout;
            o.NumMissedProbesLimit = siloOptions.MissedProbesLimit;
            o.ExtendProbeTimeoutDuringDegradation = true;
        });
        if (siloOptions.MinimumReminderPeriod is { } minimum)
        {
            silo.Configure<ReminderOptions>(o => o.MinimumReminderPeriod = minimum);
        }

        if (storage.Provider == StorageProvider.Memory)
        {
            silo.UseLocalhostClustering(siloOptions.Port, siloOptions.GatewayPort);
            // The same serializer as PostgreSQL's (below): one format, and no JSON work on every state write.
            silo.AddMemoryGrainStorage(StorageNames.State, options => options.Configure<Orleans.Serialization.Serializer>(
                (o, serializer) => o.GrainStorageSerializer = new OrleansGrainStorageSerializer(serializer)));
            silo.UseInMemoryReminderService();
            silo.Services.AddSingleton<IRegistryStore, MemoryRegistryStore>();
            silo.Services.AddSingleton<ITokenUseStore, MemoryTokenUseStore>();
            silo.Services.AddHostedService<TokenUsePruner>();
            silo.Services.AddSingleton<IEventStore, MemoryEventStore>();
            silo.Services.AddHostedService<EventPruner>();
            return silo;
        }

        var connectionString = PostgresConnectionString(configuration);
        silo.ConfigureEndpoints(AdvertisedAddress(siloOptions), siloOptions.Port, siloOptions.GatewayPort, listenOnAnyHostAddress: true);
        silo.UseAdoNetClustering(o =>
        {
            o.Invariant = NpgsqlInvariant;
            o.ConnectionString = connectionString;
        });
        silo.AddAdoNetGrainStorage(StorageNames.State, options => options.Configure<Orleans.Serialization.Serializer>((o, serializer) =>
        {
            o.Invariant = NpgsqlInvariant;
            o.ConnectionString = connectionString;
            // Orleans' own version-tolerant serializer for the [GenerateSerializer] states (the default JSON one cannot
            // read immutable collections back).
            o.GrainStorageSerializer = new OrleansGrainStorageSerializer(serializer);
        }));
        silo.UseAdoNetReminderService(o =>
        {
            o.Invariant = NpgsqlInvariant;
            o.ConnectionString = connectionString;
        });
        silo.Services.AddSingleton(_ => Npgsql.NpgsqlDataSource.Create(connectionString));
        silo.Services.AddSingleton<IRegistryStore>(sp => new PostgresRegistryStore(sp.GetRequiredService<Npgsql.NpgsqlDataSource>(), ServiceId));
        silo.Services.AddSingleton<ITokenUseStore>(sp => new PostgresTokenUseStore(sp.GetRequiredService<Npgsql.NpgsqlDataSource>(), ServiceId));
        silo.Services.AddHostedService<TokenUsePruner>();
        silo.Services.AddSingleton<IEventStore>(sp => new PostgresEventStore(sp.GetRequiredService<Npgsql.NpgsqlDataSource>(), ServiceId));
        silo.Services.AddHostedService<EventPruner>();
        return silo;
    }

    /// <summary>The meters every host exports: ours and Orleans' own.</summary>
    public static MeterProviderBuilder AddEphemeralMeters(this MeterProviderBuilder metrics) =>
        metrics.AddMeter(Contracts.Telemetry.MeterName, "Microsoft.Orleans");

    /// <summary>Run before the host starts: applies the PostgreSQL schema when configured to.</summary>
    public static async Task PrepareStorageAsync(IConfiguration configuration, ILogger logger, CancellationToken cancellationToken = default)
    {
        var storage = Storage(configuration);
        if (storage.Provider == StorageProvider.Postgres && storage.InitializeSchema)
        {
            await PostgresSchema.ApplyAsync(PostgresConnectionString(configuration), logger, cancellationToken);
        }
    }

    private static bool TryPool(string prefix)
    {
        try
        {
            _ = new AddressPool(prefix);
            return true;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    private static IPAddress AdvertisedAddress(SiloOptions options)
    {
        if (options.AdvertisedAddress is { Length: > 0 } configured)
        {
            return IPAddress.TryParse(configured, out var parsed)
                ? parsed
                : Dns.GetHostAddresses(configured).First(a => a.AddressFamily == AddressFamily.InterNetwork);
        }

        return NetworkInterface.GetAllNetworkInterfaces()
            .Where(i => i.OperationalStatus == OperationalStatus.Up && i.NetworkInterfaceType != NetworkInterfaceType.Loopback)
            .SelectMany(i => i.GetIPProperties().UnicastAddresses)
            .Select(a => a.Address)
            .FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(a))
            ?? IPAddress.Loopback;
    }
}
