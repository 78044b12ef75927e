using System.Diagnostics;
using System.Net;
using EphemeralOrleans.Testing;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>
/// The split deployment as real processes on PostgreSQL: a standalone silo (<c>src/Silo</c>) and a gateway in client
/// mode (<c>Gateway:Mode=Client</c>) that finds it through ADO.NET clustering.
/// </summary>
public sealed class ClusterModeTests : PostgresTest
{
    [PostgresFact]
    public async Task A_gateway_in_client_mode_serves_agents_from_a_standalone_silo()
    {
        var common = new Dictionary<string, string>
        {
            ["Storage:Provider"] = "Postgres",
            ["ConnectionStrings:Postgres"] = await NewDatabaseAsync("cluster"),
            ["Cluster:Id"] = "cluster-" + Guid.NewGuid().ToString("N"),
            ["Ephemeral:InactivityTimeout"] = "00:00:02",
            ["Ephemeral:ReminderPeriod"] = "00:00:02",
            ["Map:KeepAliveInterval"] = "00:00:01",
        };
        await using var silo = await HostProcess.StartSiloAsync(new Dictionary<string, string>(common)
        {
            ["Silo:AdvertisedAddress"] = "127.0.0.1",
            ["Silo:Port"] = FreePort.Next().ToString(),
            ["Silo:GatewayPort"] = FreePort.Next().ToString(),
            ["Silo:MinimumReminderPeriod"] = "00:00:01",
        });
        await using var gateway = await HostProcess.StartGatewayAsync(new Dictionary<string, string>(common)
        {
            ["Gateway:Mode"] = "Client",
            ["Admin:ApiKey"] = GatewayClient.AdminKey,
        });
        using var client = new GatewayClient(gateway.HttpUrl);

        var key = (await client.CreateKeyAsync(reusable: true, ephemeral: true)).Str("key");
        var (a, tokenA) = await client.RegisterAsync(key, hostname: "alpha");
        var (b, tokenB) = await client.RegisterAsync(key, hostname: "bravo");
        var map = await client.OpenMapAsync(tokenA);
        var full = await map.WaitForAsync(m => m.Type() == "full", TimeSpan.FromSeconds(10), "the full map");
        Assert.Equal([b.Str("id")], full.Ids("peers"));

        Assert.Equal(HttpStatusCode.NoContent, await client.LogoutAsync(tokenB));
        await map.WaitForAsync(m => m.Type() == "delta" && m.Ids("peersRemoved").Contains(b.Str("id")), TimeSpan.FromSeconds(10), "B's removal");

        // Inactivity removal runs in the standalone silo: after the stream closes, the node goes after the timeout.
        await map.DisposeAsync();
        var closed = Stopwatch.StartNew();
        await Poll.UntilAsync(async () => await client.GetNodeAsync(a.Str("id")) is null, TimeSpan.FromSeconds(20), "A's removal");
        Assert.True(closed.Elapsed >= TimeSpan.FromSeconds(1.9), $"removed {closed.Elapsed} after its stream closed");
    }
}
