using EphemeralOrleans.Grains.Common;
using EphemeralOrleans.Grains.Hosting;
using EphemeralOrleans.Grains.Registry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Configuration;
using Orleans.TestingHost;

namespace EphemeralOrleans.Tests.Infrastructure;

/// <summary>A two-silo TestCluster with in-memory storage and reminders, and an address pool small enough (/21) that concurrent registrations collide.</summary>
public sealed class ClusterFixture : IAsyncLifetime
{
    public TestCluster Cluster { get; private set; } = null!;

    public IClusterClient Client => Cluster.Client;

    public async Task InitializeAsync()
    {
        var builder = new TestClusterBuilder(initialSilosCount: 2);
        builder.ConfigureHostConfiguration(configuration => configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Addresses:Ipv4Prefix"] = "100.64.0.0/21",
        }));
        builder.AddSiloBuilderConfigurator<SiloConfigurator>();
        Cluster = builder.Build();
        await Cluster.DeployAsync();
        await Cluster.WaitForClusterManifestToStabilizeAsync();
    }

    public async Task DisposeAsync() => await Cluster.DisposeAsync();

    private sealed class SiloConfigurator : ISiloConfigurator
    {
        public void Configure(ISiloBuilder silo)
        {
            silo.AddMemoryGrainStorage(StorageNames.State);
            silo.UseInMemoryReminderService();
            silo.Services.AddEphemeralOptions(silo.Configuration);
            silo.Services.AddSingleton<IRegistryStore, MemoryRegistryStore>();
        }
    }
}
