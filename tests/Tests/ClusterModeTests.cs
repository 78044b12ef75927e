using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using EphemeralOrleans.Testing;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>
/// The split deployment as real processes on PostgreSQL: a standalone silo (<c>src/Silo</c>) and a gateway in client
/// mode (<c>Gateway:Mode=Client</c>) that finds it through ADO.NET clustering.
/// </summary>
[Collection(TimingCollection.Name)]
public sealed class ClusterModeTests : PostgresTest
{
    [PostgresFact]
    public async Task Gateways_in_client_mode_serve_agents_from_a_standalone_silo_and_see_each_others_nodes()
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

        // A second gateway beside the first: each has its own netmap observer and its own agents.
        await using var second = await HostProcess.StartGatewayAsync(new Dictionary<string, string>(common)
        {
            ["Gateway:Mode"] = "Client",
            ["Admin:ApiKey"] = GatewayClient.AdminKey,
        });
        using var secondClient = new GatewayClient(second.HttpUrl);

        // Both gateways' first use of the control key at once: they end up with the one the key ring stored.
        var controlKeys = await Task.WhenAll(client.ControlKeyAsync(), secondClient.ControlKeyAsync());
        Assert.Equal(controlKeys[0], controlKeys[1]);

        var key = (await client.CreateKeyAsync(reusable: true, ephemeral: true)).Str("key");
        // A proof made for one gateway holds on the other, and a proof used on one is used on both.
        var device = TestDevice.Create();
        var proof = device.Prove(controlKeys[0], key, "delta");
        var registered = await client.TryRegisterAsync(key, device.NodeKey, "delta", proof: proof);
        Assert.Equal(HttpStatusCode.OK, registered.Status);
        Assert.Equal((HttpStatusCode.Unauthorized, "proof_replayed"), ((await secondClient.TryRegisterAsync(key, device.NodeKey, "delta", proof: proof)) is var r ? (r.Status, r.Code) : default));
        var (again, _) = await secondClient.RegisterDeviceAsync(key, device, "delta");
        Assert.Equal(registered.Body.GetProperty("node").Str("id"), again.Str("id"));
        Assert.Equal(HttpStatusCode.NoContent, (await client.DeleteNodeAsync(again.Str("id"))).Status);

        var (a, tokenA) = await client.RegisterAsync(key, hostname: "alpha");
        var (b, tokenB) = await client.RegisterAsync(key, hostname: "bravo");
        // B stays connected until it logs out: without a stream, the 2 s timeout could remove it before this test is there.
        var mapB = await client.OpenMapAsync(tokenB);
        var map = await client.OpenMapAsync(tokenA);
        var full = await map.WaitForAsync(m => m.Type() == "full", TimeSpan.FromSeconds(10), "the full map");
        Assert.Equal([b.Str("id")], full.Ids("peers"));

        // A node of the second gateway appears on the first one's stream, and the other way round.
        var (c, tokenC) = await secondClient.RegisterAsync(key, hostname: "charlie");
        await map.WaitForAsync(m => m.Type() == "delta" && m.Ids("peersChanged").Contains(c.Str("id")), TimeSpan.FromSeconds(10), "C on A's stream");
        await using (var mapC = await secondClient.OpenMapAsync(tokenC))
        {
            var fullC = await mapC.WaitForAsync(m => m.Type() == "full", TimeSpan.FromSeconds(10), "C's full map");
            Assert.Equal(new[] { a.Str("id"), b.Str("id") }.Order(), fullC.Ids("peers").Order());
            Assert.Equal(HttpStatusCode.NoContent, await secondClient.LogoutAsync(tokenC));
            await mapC.WaitForEndAsync(TimeSpan.FromSeconds(10));
        }

        await map.WaitForAsync(m => m.Type() == "delta" && m.Ids("peersRemoved").Contains(c.Str("id")), TimeSpan.FromSeconds(10), "C's removal on A's stream");

        Assert.Equal(HttpStatusCode.NoContent, await client.LogoutAsync(tokenB));
        await map.WaitForAsync(m => m.Type() == "delta" && m.Ids("peersRemoved").Contains(b.Str("id")), TimeSpan.FromSeconds(10), "B's removal");
        await mapB.WaitForEndAsync(TimeSpan.FromSeconds(10));
        await mapB.DisposeAsync();

        // Inactivity removal runs in the standalone silo: after the stream closes, the node goes after the timeout.
        await map.DisposeAsync();
        var closed = Stopwatch.StartNew();
        await Poll.UntilAsync(async () => await client.GetNodeAsync(a.Str("id")) is null, TimeSpan.FromSeconds(20), "A's removal");
        Assert.True(closed.Elapsed >= TimeSpan.FromSeconds(1.9), $"removed {closed.Elapsed} after its stream closed");

        // A web console session opened on one gateway is good on the other: both read the key ring from the cluster.
        var session = await ConsoleSessionCookieAsync(gateway.HttpUrl);
        using var other = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false, UseCookies = false }) { BaseAddress = second.HttpUrl };
        using var request = new HttpRequestMessage(HttpMethod.Get, "/admin/devices");
        request.Headers.Add("Cookie", session);
        using var page = await other.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Contains("<h1>Devices</h1>", await page.Content.ReadAsStringAsync());
    }

    [PostgresFact]
    public async Task A_client_mode_gateway_exports_each_tailnets_node_counts_and_they_follow_churn()
    {
        await using var topology = await ClusterTopology.StartAsync(await NewDatabaseAsync("fleet"), new Dictionary<string, string>
        {
            ["Admin:ApiKey"] = GatewayClient.AdminKey,
            ["Gateway:FleetMetricsInterval"] = "00:00:01",
        }, silos: 2);
        using var client = new GatewayClient(topology.HttpUrl);
        var keyA = (await client.CreateKeyAsync(ephemeral: true, tailnet: "fleet-a")).Str("key");
        var keyB = (await client.CreateKeyAsync(ephemeral: false, tailnet: "fleet-b")).Str("key");
        var a = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => client.RegisterAsync(keyA, hostname: $"a{i}")));
        var b = await Task.WhenAll(Enumerable.Range(0, 3).Select(i => client.RegisterAsync(keyB, hostname: $"b{i}")));
        await using var streamA = await client.OpenMapAsync(a[0].Token);
        await using var streamB = await client.OpenMapAsync(b[0].Token);
        await streamA.WaitForAsync(m => m.Type() == "full", TimeSpan.FromSeconds(10), "A's full map");
        await streamB.WaitForAsync(m => m.Type() == "full", TimeSpan.FromSeconds(10), "B's full map");
        await GaugesMatchTheApiAsync(client, "fleet-a", "fleet-b");

        // Churn: two of A log out, one of B is deleted, B's streaming node goes offline.
        Assert.Equal(HttpStatusCode.NoContent, await client.LogoutAsync(a[1].Token));
        Assert.Equal(HttpStatusCode.NoContent, await client.LogoutAsync(a[2].Token));
        Assert.Equal(HttpStatusCode.NoContent, (await client.DeleteNodeAsync(b[1].Node.Str("id"), "fleet-b")).Status);
        await streamB.DisposeAsync();
        await GaugesMatchTheApiAsync(client, "fleet-a", "fleet-b");

        // And the removals, by tailnet and reason, as the registries counted them.
        await Poll.UntilAsync(async () =>
        {
            var scrape = await client.Http.GetStringAsync("/metrics");
            return Removals(scrape, "fleet-a", "logout") == 2 && Removals(scrape, "fleet-b", "admin") == 1 && Removals(scrape, "fleet-a", "admin") == 0;
        }, TimeSpan.FromSeconds(10), "the removals in the client-mode gateway's scrape");

        static int Removals(string scrape, string tailnet, string reason) => System.Text.RegularExpressions.Regex.Matches(scrape,
                @"^eo_tailnet_removals_total\{([^}]*)\} (\d+)", System.Text.RegularExpressions.RegexOptions.Multiline)
            .Where(m => m.Groups[1].Value.Contains($"reason=\"{reason}\"") && m.Groups[1].Value.Contains($"tailnet=\"{tailnet}\""))
            .Select(m => int.Parse(m.Groups[2].Value)).SingleOrDefault();
    }

    /// <summary>Polls the gateway's <c>eo_tailnet_nodes</c> until, for each tailnet, every kind equals what the API
    /// lists (within a few of the test's 1 s poll intervals).</summary>
    private static async Task GaugesMatchTheApiAsync(GatewayClient client, params string[] tailnets)
    {
        string? last = null;
        await Poll.UntilAsync(async () =>
        {
            var scraped = System.Text.RegularExpressions.Regex.Matches(await client.Http.GetStringAsync("/metrics"), @"^eo_tailnet_nodes\{([^}]*)\} (\d+)", System.Text.RegularExpressions.RegexOptions.Multiline)
                .ToDictionary(m => (Label(m.Groups[1].Value, "tailnet"), Label(m.Groups[1].Value, "kind")), m => int.Parse(m.Groups[2].Value));
            foreach (var tailnet in tailnets)
            {
                var listed = await client.ListNodesAsync(tailnet);
                var expected = new Dictionary<string, int>
                {
                    ["total"] = listed.Length,
                    ["online"] = listed.Count(n => n.GetProperty("online").GetBoolean()),
                    ["offline"] = listed.Count(n => !n.GetProperty("online").GetBoolean()),
                    ["ephemeral"] = listed.Count(n => n.GetProperty("ephemeral").GetBoolean()),
                    ["pending_approval"] = listed.Count(n => !n.GetProperty("authorized").GetBoolean()),
                };
                last = $"{tailnet}: API {string.Join(", ", expected.Select(e => $"{e.Key} {e.Value}"))}; gauges "
                    + string.Join(", ", expected.Keys.Select(k => $"{k} {(scraped.TryGetValue((tailnet, k), out var v) ? v : -1)}"));
                if (expected.Any(e => !scraped.TryGetValue((tailnet, e.Key), out var value) || value != e.Value))
                {
                    return false;
                }
            }

            return true;
        }, TimeSpan.FromSeconds(10), "the gauges to match the API", everyMs: 250, why: () => last ?? "");

        static string Label(string labels, string name) =>
            System.Text.RegularExpressions.Regex.Match(labels, name + "=\"([^\"]*)\"").Groups[1].Value;
    }

    [PostgresFact]
    public async Task Nodes_join_with_OIDC_tokens_through_a_client_mode_gateway_and_trust_policies_survive_a_full_restart()
    {
        await using var issuer = await TestIssuer.StartAsync();
        await using var topology = await ClusterTopology.StartAsync(await NewDatabaseAsync("trust"),
            new Dictionary<string, string> { ["Admin:ApiKey"] = GatewayClient.AdminKey }, silos: 2);
        using var client = new GatewayClient(topology.HttpUrl);
        var created = await client.TryCreateTrustPolicyAsync(new { issuer = issuer.Issuer, audiences = new[] { "eo" }, subject = "repo:acme/*" });
        Assert.Equal(HttpStatusCode.Created, created.Status);
        var used = issuer.Mint("repo:acme/api", "eo");
        var joined = await client.TryRegisterWithTokenAsync(used, hostname: "ci");
        Assert.True(joined.Status == HttpStatusCode.OK, $"{joined.Status} {joined.Code} {joined.Detail}");
        Assert.Equal("trust:" + created.Body.Str("id"), joined.Body.GetProperty("node").Str("keyId"));

        // Every process stopped and started again on the same database.
        await topology.StopGatewayAsync();
        await topology.StopSiloAsync(1);
        await topology.StopSiloAsync(0);
        await topology.StartSiloAsync(0);
        await topology.StartSiloAsync(1);
        await topology.StartGatewayAsync();

        var policies = await client.Admin.GetFromJsonAsync<System.Text.Json.JsonElement>("/api/v1/tailnets/-/trust-policies");
        Assert.Equal(created.Body.Str("id"), Assert.Single(policies.GetProperty("trustPolicies").EnumerateArray()).Str("id"));
        Assert.Equal("token_replayed", (await client.TryRegisterWithTokenAsync(used)).Code);
        var again = await client.TryRegisterWithTokenAsync(issuer.Mint("repo:acme/web", "eo"), hostname: "ci");
        Assert.True(again.Status == HttpStatusCode.OK, $"{again.Status} {again.Code} {again.Detail}");
    }

    /// <summary>Signs in to the console as a browser would (form, anti-forgery token); returns the session cookie.</summary>
    private static async Task<string> ConsoleSessionCookieAsync(Uri gateway)
    {
        var cookies = new CookieContainer();
        using var http = new HttpClient(new HttpClientHandler { CookieContainer = cookies, AllowAutoRedirect = false }) { BaseAddress = gateway };
        var form = await http.GetStringAsync("/admin/signin");
        var token = System.Text.RegularExpressions.Regex.Match(form, "name=\"__RequestVerificationToken\" type=\"hidden\" value=\"([^\"]+)\"").Groups[1].Value;
        using var signIn = await http.PostAsync("/admin/signin", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["ApiKey"] = GatewayClient.AdminKey,
            ["__RequestVerificationToken"] = token,
        }));
        Assert.Equal(HttpStatusCode.Redirect, signIn.StatusCode);
        var session = cookies.GetCookies(new Uri(gateway, "/admin/")).Single(c => c.Name == "eo-console");
        return $"{session.Name}={session.Value}";
    }
}
