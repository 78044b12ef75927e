namespace EphemeralOrleans.Testing;

/// <summary>
/// The cluster deployment as real processes on one PostgreSQL database: standalone silos and one gateway in client
/// mode, each on fixed ports so that a restarted process comes back where it was.
/// </summary>
public sealed class ClusterTopology : IAsyncDisposable
{
    private readonly Dictionary<string, string> _gatewaySettings;
    private readonly List<Dictionary<string, string>> _siloSettings;
    private readonly HostProcess?[] _silos;

    private ClusterTopology(Dictionary<string, string> gatewaySettings, List<Dictionary<string, string>> siloSettings)
    {
        _gatewaySettings = gatewaySettings;
        _siloSettings = siloSettings;
        _silos = new HostProcess?[siloSettings.Count];
    }

    public HostProcess? Gateway { get; private set; }

    public Uri HttpUrl => new(_gatewaySettings["Kestrel:Endpoints:Http:Url"]);

    public Uri GrpcUrl => new(_gatewaySettings["Kestrel:Endpoints:Grpc:Url"]);

    /// <summary>Silos first (the first one applies the schema), then the gateway, each waited for.</summary>
    public static async Task<ClusterTopology> StartAsync(string connectionString, IReadOnlyDictionary<string, string> settings, int silos = 2)
    {
        var common = new Dictionary<string, string>(settings)
        {
            ["Storage:Provider"] = "Postgres",
            ["ConnectionStrings:Postgres"] = connectionString,
            ["Cluster:Id"] = "topology-" + Guid.NewGuid().ToString("N"),
            ["Silo:AdvertisedAddress"] = "127.0.0.1",
        };
        var siloSettings = Enumerable.Range(0, silos).Select(_ => new Dictionary<string, string>(common)
        {
            ["Silo:Port"] = FreePort.Next().ToString(),
            ["Silo:GatewayPort"] = FreePort.Next().ToString(),
            ["Silo:MetricsPort"] = FreePort.Next().ToString(),
        }).ToList();
        var gatewaySettings = new Dictionary<string, string>(common)
        {
            ["Gateway:Mode"] = "Client",
            ["Kestrel:Endpoints:Http:Url"] = $"http://127.0.0.1:{FreePort.Next()}",
            ["Kestrel:Endpoints:Grpc:Url"] = $"http://127.0.0.1:{FreePort.Next()}",
        };
        var topology = new ClusterTopology(gatewaySettings, siloSettings);
        try
        {
            await topology.StartSiloAsync(0);
            await Task.WhenAll(Enumerable.Range(1, silos - 1).Select(topology.StartSiloAsync));
            await topology.StartGatewayAsync();
            return topology;
        }
        catch
        {
            await topology.DisposeAsync();
            throw;
        }
    }

    public async Task StartSiloAsync(int index) => _silos[index] = await HostProcess.StartSiloAsync(_siloSettings[index]);

    public async Task KillSiloAsync(int index)
    {
        await _silos[index]!.KillAsync();
        await _silos[index]!.DisposeAsync();
        _silos[index] = null;
    }

    public async Task StopSiloAsync(int index)
    {
        await _silos[index]!.StopAsync(TimeSpan.FromSeconds(90));
        await _silos[index]!.DisposeAsync();
        _silos[index] = null;
    }

    public async Task StartGatewayAsync() => Gateway = await HostProcess.StartGatewayAsync(_gatewaySettings, TimeSpan.FromSeconds(120));

    public async Task StopGatewayAsync()
    {
        await Gateway!.StopAsync(TimeSpan.FromSeconds(60));
        await Gateway.DisposeAsync();
        Gateway = null;
    }

    /// <summary>The address of silo <paramref name="index"/> as it appears in the membership table.</summary>
    public int SiloPort(int index) => int.Parse(_siloSettings[index]["Silo:Port"]);

    public async ValueTask DisposeAsync()
    {
        if (Gateway is not null)
        {
            await Gateway.DisposeAsync();
        }

        foreach (var silo in _silos.OfType<HostProcess>())
        {
            await silo.DisposeAsync();
        }
    }
}
