using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Microsoft.Extensions.Configuration;
using EphemeralOrleans.Testing;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>What operators look at: Prometheus metrics and the Orleans dashboard. Instruments are process-wide, so
/// the metrics test runs alone and asserts differences.</summary>
[Collection(TimingCollection.Name)]
public sealed class OperationsTests : GatewayTest
{
    protected override IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?> { ["Gateway:FleetMetricsInterval"] = "00:00:01" };

    [Fact]
    public async Task Metrics_count_registrations_removals_by_reason_and_open_streams()
    {
        var before = await ScrapeAsync();
        var key = (await Gateway.CreateKeyAsync(ephemeral: true, tailnet: "metrics")).Str("key");
        var (_, loggedOut) = await Gateway.RegisterAsync(key, hostname: "leaves");
        var (deleted, _) = await Gateway.RegisterAsync(key, hostname: "deleted");
        var (_, streaming) = await Gateway.RegisterAsync(key, hostname: "streams");
        Assert.Equal(HttpStatusCode.Unauthorized, (await Gateway.TryRegisterAsync(key[..^4] + "AAAA")).Status);
        await using var map = await Gateway.OpenMapAsync(streaming);
        await map.WaitForAsync(m => m.Type() == "full", TimeSpan.FromSeconds(10), "full map");
        Assert.Equal(HttpStatusCode.NoContent, await Gateway.LogoutAsync(loggedOut));
        Assert.Equal(HttpStatusCode.NoContent, (await Gateway.DeleteNodeAsync(deleted.Str("id"), "metrics")).Status);
        await map.WaitForAsync(m => m.Type() == "delta" && m.Ids("peersRemoved").Contains(deleted.Str("id")), TimeSpan.FromSeconds(10), "the removal");

        var after = await ScrapeAsync();
        double Grew(string series) => after.GetValueOrDefault(series) - before.GetValueOrDefault(series);
        Assert.Equal(3, Grew("eo_gateway_registrations_total{credential=\"key\",outcome=\"ok\"}"));
        Assert.Equal(1, Grew("eo_gateway_registrations_total{credential=\"key\",outcome=\"invalid_key\"}"));
        Assert.Equal(3, Grew("eo_node_registrations_total{again=\"false\",ephemeral=\"true\"}"));
        Assert.Equal(1, Grew("eo_node_removals_total{reason=\"logout\"}"));
        Assert.Equal(1, Grew("eo_node_removals_total{reason=\"admin\"}"));
        Assert.Equal(1, Grew("eo_gateway_map_streams"));
        Assert.Equal(1, Grew("eo_nodes{kind=\"online\"}"));
        Assert.True(Grew("eo_gateway_deltas_sent_total") >= 1);
        Assert.True(Grew("eo_gateway_change_delivery_seconds_count") >= 1);
        Assert.DoesNotContain(key[^20..], await Gateway.Http.GetStringAsync("/metrics"));

        // The same removals as the tailnet's registry counts them, which a gateway in client mode exports too (polled).
        await Poll.UntilAsync(async () =>
        {
            var fleet = await ScrapeAsync();
            return fleet.GetValueOrDefault("eo_tailnet_removals_total{reason=\"logout\",tailnet=\"metrics\"}") == 1
                && fleet.GetValueOrDefault("eo_tailnet_removals_total{reason=\"admin\",tailnet=\"metrics\"}") == 1
                && fleet.GetValueOrDefault("eo_tailnet_nodes{kind=\"offline\",tailnet=\"metrics\"}") == 0
                && fleet.GetValueOrDefault("eo_tailnet_nodes{kind=\"online\",tailnet=\"metrics\"}") == 1;
        }, TimeSpan.FromSeconds(10), "the tailnet's removals and nodes in the scrape");

        // A stream silent for the keepalive interval (1 s here) gets its keepalive, and how late it was is measured.
        var keepalives = (await ScrapeAsync()).GetValueOrDefault("eo_gateway_keepalive_lag_seconds_count");
        await map.WaitForAsync(m => m.Type() == "keepalive", TimeSpan.FromSeconds(5), "a keepalive");
        await Poll.UntilAsync(async () => (await ScrapeAsync()).GetValueOrDefault("eo_gateway_keepalive_lag_seconds_count") > keepalives,
            TimeSpan.FromSeconds(5), "the keepalive lag counted");
    }

    /// <summary>Series → value, without the scope label.</summary>
    private async Task<Dictionary<string, double>> ScrapeAsync()
    {
        var text = await Gateway.Http.GetStringAsync("/metrics");
        return text.Split('\n').Where(l => l.StartsWith("eo_", StringComparison.Ordinal))
            .Select(l => (Series: l[..l.LastIndexOf(' ')].Replace("otel_scope_name=\"EphemeralOrleans\",", "").Replace("{otel_scope_name=\"EphemeralOrleans\"}", ""),
                Value: double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture)))
            .ToDictionary(p => p.Series, p => p.Value);
    }

    [Fact]
    public async Task The_dashboard_is_open_on_a_loopback_binding()
    {
        var page = await Gateway.Http.GetAsync("/dashboard/");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Contains("Orleans Dashboard", await page.Content.ReadAsStringAsync());
    }
}

/// <summary>
/// The dashboard asks for the admin key from anyone who is not on this machine — decided per connection, whatever
/// the HTTP endpoint is bound to — and from any request a proxy forwarded. The gRPC port answers gRPC only.
/// </summary>
public sealed class ExposedDashboardTests : GatewayTest
{
    protected override IReadOnlyDictionary<string, string?> Settings =>
        new Dictionary<string, string?> { ["Kestrel:Endpoints:Http:Url"] = $"http://0.0.0.0:{FreePort.Next()}" };

    [Fact]
    public async Task The_dashboard_needs_the_admin_key_from_another_machine_or_through_a_proxy()
    {
        // Another machine, as far as the connection shows: this host's own non-loopback address as the source.
        var external = System.Net.NetworkInformation.NetworkInterface.GetAllNetworkInterfaces()
            .SelectMany(i => i.GetIPProperties().UnicastAddresses).Select(u => u.Address)
            .FirstOrDefault(a => a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork && !IPAddress.IsLoopback(a));
        Assert.True(external is not null, "this test needs a non-loopback IPv4 address on the machine");
        using var remote = new HttpClient(new SocketsHttpHandler
        {
            ConnectCallback = async (context, cancellationToken) =>
            {
                var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
                socket.Bind(new IPEndPoint(external, 0));
                await socket.ConnectAsync(new IPEndPoint(external, context.DnsEndPoint.Port), cancellationToken);
                return new System.Net.Sockets.NetworkStream(socket, ownsSocket: true);
            },
        }) { BaseAddress = Gateway.Http.BaseAddress };

        var anonymous = await remote.GetAsync("/dashboard/");
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        Assert.StartsWith("Basic", anonymous.Headers.WwwAuthenticate.ToString());
        foreach (var (password, expected) in new[] { (ApiClient.AdminKey + "x", HttpStatusCode.Unauthorized), (ApiClient.AdminKey, HttpStatusCode.OK) })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/dashboard/");
            request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes("admin:" + password)));
            Assert.Equal(expected, (await remote.SendAsync(request)).StatusCode);
        }

        // From this machine it is open, unless a proxy forwarded the request (then everyone would look local).
        Assert.Equal(HttpStatusCode.OK, (await Gateway.Http.GetAsync("/dashboard/")).StatusCode);
        using var forwarded = new HttpRequestMessage(HttpMethod.Get, "/dashboard/");
        forwarded.Headers.Add("X-Forwarded-For", "203.0.113.7");
        Assert.Equal(HttpStatusCode.Unauthorized, (await Gateway.Http.SendAsync(forwarded)).StatusCode);
    }

    [Fact]
    public async Task The_grpc_port_serves_grpc_and_nothing_else()
    {
        // What the audit reached over h2c on the gRPC port: the dashboard's live log, metrics, the console, the REST API.
        using var h2c = new HttpClient { BaseAddress = new Uri(Gateway.Service<IConfiguration>()["Kestrel:Endpoints:Grpc:Url"]!) };
        foreach (var path in new[] { "/dashboard/", "/dashboard/Trace", "/metrics", "/admin/signin", "/healthz", "/api/v1/tailnets/-/nodes", "/api/v1/machine/endpoints" })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, path) { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", ApiClient.AdminKey);
            Assert.True((await h2c.SendAsync(request)).StatusCode == HttpStatusCode.NotFound, $"{path} answered on the gRPC port");
        }

        // gRPC itself, health included, still answers there.
        Assert.StartsWith("controlkey:", await Gateway.Over(Transport.Grpc).ControlKeyAsync());
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress(h2c.BaseAddress!);
        var health = await new Grpc.Health.V1.Health.HealthClient(channel).CheckAsync(new Grpc.Health.V1.HealthCheckRequest());
        Assert.NotNull(health);
    }
}

/// <summary>
/// <c>deploy/grafana/ephemeral-orleans.json</c> charts only what the gateway exports: after a workload that makes every
/// kind of event the panels show (registrations ok and refused, a map stream and its deltas, a removal for inactivity,
/// flood refusals, a wrong admin key), every metric a panel's query names is in the gateway's scrape.
/// </summary>
public sealed class GrafanaDashboardTests : GatewayTest
{
    protected override IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Gateway:FleetMetricsInterval"] = "00:00:01",
        ["RateLimits:Enabled"] = "true",
        ["RateLimits:RegistrationsPerSecond"] = "1",
        ["RateLimits:RegistrationBurst"] = "4",
    };

    [Fact]
    public async Task Every_metric_the_Grafana_dashboard_queries_is_exported()
    {
        var path = Path.Combine(HostProcess.RepositoryRoot(), "deploy", "grafana", "ephemeral-orleans.json");
        using var dashboard = System.Text.Json.JsonDocument.Parse(await File.ReadAllTextAsync(path));
        var queried = dashboard.RootElement.GetProperty("panels").EnumerateArray()
            .SelectMany(p => p.GetProperty("targets").EnumerateArray()).Select(t => t.GetProperty("expr").GetString()!)
            .SelectMany(e => System.Text.RegularExpressions.Regex.Matches(e, @"\beo_[a-z_]+").Select(m => m.Value))
            .ToHashSet(StringComparer.Ordinal);
        Assert.True(queried.Count >= 8, string.Join(", ", queried));

        var key = (await Gateway.CreateKeyAsync(ephemeral: true)).Str("key");
        var (_, streaming) = await Gateway.RegisterAsync(key, hostname: "streams");
        await using var map = await Gateway.OpenMapAsync(streaming);
        await map.WaitForAsync(m => m.Type() == "full", TimeSpan.FromSeconds(10), "full map");
        var (idle, _) = await Gateway.RegisterAsync(key, hostname: "goes-idle"); // removed for inactivity (2 s)
        Assert.Equal(HttpStatusCode.Unauthorized, (await Gateway.TryRegisterAsync(key[..^4] + "AAAA")).Status);
        using (var wrongKey = new HttpClient { BaseAddress = Gateway.Http.BaseAddress })
        {
            wrongKey.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "eo-admin-wrong-key-000000000000000000000");
            Assert.Equal(HttpStatusCode.Unauthorized, (await wrongKey.GetAsync("/api/v1/tailnets/-/nodes")).StatusCode);
        }

        for (var i = 0; i < 10 && (await Gateway.TryRegisterAsync(key)).Status != HttpStatusCode.TooManyRequests; i++)
        {
        }

        await map.WaitForAsync(m => m.Type() == "delta" && m.Ids("peersRemoved").Contains(idle.Str("id")), TimeSpan.FromSeconds(20), "the inactivity removal");
        string[] missing = [];
        await Poll.UntilAsync(async () =>
        {
            var scrape = await Gateway.Http.GetStringAsync("/metrics");
            missing = queried.Where(name => !System.Text.RegularExpressions.Regex.IsMatch(scrape, $"^{name}[{{ ]", System.Text.RegularExpressions.RegexOptions.Multiline)).ToArray();
            return missing.Length == 0;
        }, TimeSpan.FromSeconds(20), "every queried metric in the scrape", why: () => "missing: " + string.Join(", ", missing));
    }
}
