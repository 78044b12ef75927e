using EphemeralOrleans.Gateway.Hosting;
using EphemeralOrleans.Grains.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;

namespace EphemeralOrleans.Testing;

/// <summary>The gateway in this process, on real Kestrel sockets at free loopback ports, with its co-hosted silo.</summary>
public static class InProcessGateway
{
    /// <summary>Starts a gateway with <paramref name="settings"/> over fresh ports and a fresh cluster id; returns it and its HTTP URL.</summary>
    public static async Task<(WebApplication App, Uri HttpUrl)> StartAsync(IReadOnlyDictionary<string, string?> settings)
    {
        // A configured HTTP endpoint on a wildcard address is reached through loopback; one on a given address (a
        // network lab's bridge) through that address.
        var httpUrl = settings.TryGetValue("Kestrel:Endpoints:Http:Url", out var configured) && configured is not null
            ? new Uri(configured) is var url && url.Host is "0.0.0.0" or "[::]" or "localhost" ? new Uri($"http://127.0.0.1:{url.Port}") : url
            : new Uri($"http://127.0.0.1:{FreePort.Next()}");
        var all = new Dictionary<string, string?>
        {
            ["Kestrel:Endpoints:Http:Url"] = httpUrl.ToString().TrimEnd('/'),
            ["Kestrel:Endpoints:Grpc:Url"] = $"http://127.0.0.1:{FreePort.Next()}",
            ["Silo:Port"] = FreePort.Next().ToString(),
            ["Silo:GatewayPort"] = FreePort.Next().ToString(),
            ["Cluster:Id"] = "test-" + Guid.NewGuid().ToString("N"),
            ["Logging:LogLevel:Default"] = "Warning",
        };
        foreach (var (key, value) in settings)
        {
            all[key] = value;
        }

        TestCertificates.EncryptKeyRing(all);

        var app = GatewayApp.Build([], configuration => configuration.AddInMemoryCollection(all));
        await EphemeralHosting.PrepareStorageAsync(app.Configuration, app.Logger);
        await app.StartAsync();
        return (app, httpUrl);
    }
}
