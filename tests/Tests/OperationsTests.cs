using System.Net;
using System.Net.Http.Headers;
using System.Text;
using EphemeralOrleans.Testing;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>What operators look at: Prometheus metrics and the Orleans dashboard. Instruments are process-wide, so
/// the metrics test runs alone and asserts differences.</summary>
[Collection(TimingCollection.Name)]
public sealed class OperationsTests : GatewayTest
{
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
        Assert.Equal(3, Grew("eo_gateway_registrations_total{outcome=\"ok\"}"));
        Assert.Equal(1, Grew("eo_gateway_registrations_total{outcome=\"invalid_key\"}"));
        Assert.Equal(3, Grew("eo_node_registrations_total{again=\"false\",ephemeral=\"true\"}"));
        Assert.Equal(1, Grew("eo_node_removals_total{reason=\"logout\"}"));
        Assert.Equal(1, Grew("eo_node_removals_total{reason=\"admin\"}"));
        Assert.Equal(1, Grew("eo_gateway_map_streams"));
        Assert.Equal(1, Grew("eo_nodes{kind=\"online\"}"));
        Assert.True(Grew("eo_gateway_deltas_sent_total") >= 1);
        Assert.True(Grew("eo_gateway_change_delivery_seconds_count") >= 1);
        Assert.DoesNotContain(key[^20..], await Gateway.Http.GetStringAsync("/metrics"));
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

/// <summary>Bound beyond loopback, the dashboard asks for the admin key.</summary>
public sealed class ExposedDashboardTests : GatewayTest
{
    protected override IReadOnlyDictionary<string, string?> Settings =>
        new Dictionary<string, string?> { ["Kestrel:Endpoints:Http:Url"] = $"http://0.0.0.0:{FreePort.Next()}" };

    [Fact]
    public async Task The_dashboard_needs_the_admin_key_when_bound_beyond_loopback()
    {
        var anonymous = await Gateway.Http.GetAsync("/dashboard/");
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        Assert.StartsWith("Basic", anonymous.Headers.WwwAuthenticate.ToString());

        foreach (var (password, expected) in new[] { (ApiClient.AdminKey + "x", HttpStatusCode.Unauthorized), (ApiClient.AdminKey, HttpStatusCode.OK) })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/dashboard/");
            request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes("admin:" + password)));
            Assert.Equal(expected, (await Gateway.Http.SendAsync(request)).StatusCode);
        }
    }
}
