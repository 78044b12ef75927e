using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Validation;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>Address leases on a two-silo cluster: no duplicates under a thousand concurrent registrations.</summary>
public sealed class AddressTests(ClusterFixture fixture) : IClassFixture<ClusterFixture>
{
    [Fact]
    public async Task A_thousand_concurrent_registrations_on_two_silos_get_a_thousand_distinct_addresses()
    {
        const string tailnet = "addresses";
        var client = fixture.Client;
        Assert.Equal(2, (await client.GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true)).Count);
        var created = await client.GetGrain<IAuthKeyGrain>("addresskey").Create(tailnet, new AuthKeySpec(true, false, true, [], null, null));
        Assert.True(Identifiers.TryAuthKey(created!.Key, out var keyId, out var secret));
        var key = client.GetGrain<IAuthKeyGrain>(keyId);

        var results = await Task.WhenAll(Enumerable.Range(0, 1000).Select(async i =>
        {
            var grant = (await key.Redeem(secret)).Grant!;
            var nodeKey = TestGateway.NewNodeKey();
            return await client.GetGrain<INodeGrain>(NodeIds.GrainKeyFor(tailnet, nodeKey))
                .Register(new RegisterCommand(nodeKey, $"worker{i % 10}", false, grant));
        }));

        Assert.All(results, r => Assert.Null(r.Failure));
        var nodes = results.Select(r => NodeView.From(r.Node!)).ToArray();
        Assert.Equal(1000, nodes.Select(n => n.Ipv4).Distinct().Count());
        Assert.Equal(1000, nodes.Select(n => n.Ipv6).Distinct().Count());
        var pool = new AddressPool("100.64.0.0/21");
        Assert.All(nodes, n => Assert.True(pool.IsUsable(AddressPool.ToUInt32(IPAddress.Parse(n.Ipv4))), n.Ipv4));
        Assert.All(nodes, n => Assert.StartsWith("fd7a:115c:a1e0:", n.Ipv6));

        var snapshot = await client.GetGrain<ITailnetGrain>(tailnet).GetSnapshot();
        Assert.Equal(1000, snapshot.Nodes.Length);
        Assert.Equal(1000, snapshot.Nodes.Select(n => n.Record.Name).Distinct().Count());
        Assert.Equal(1000, (await key.Describe())!.Uses);
    }
}

/// <summary>A released address waits out its quarantine before anyone gets it again.</summary>
[Collection(TimingCollection.Name)]
public sealed class QuarantineTests : GatewayTest
{
    // 100.64.0.0/30 has exactly two usable addresses.
    protected override IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Addresses:Ipv4Prefix"] = "100.64.0.0/30",
        ["Ephemeral:IpQuarantine"] = "00:00:03",
    };

    [Fact]
    public async Task A_released_address_is_not_reused_before_the_quarantine_ends()
    {
        var key = (await Gateway.CreateKeyAsync(reusable: true, ephemeral: true)).Str("key");
        var (first, firstToken) = await Gateway.RegisterAsync(key);
        var (second, _) = await Gateway.RegisterAsync(key);
        Assert.Equal(new[] { "100.64.0.1", "100.64.0.2" }, new[] { first.Str("ipv4"), second.Str("ipv4") }.Order());

        var full = await Gateway.PostRegisterAsync(key);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, full.StatusCode);
        Assert.Equal("address_pool_exhausted", (await full.Content.ReadFromJsonAsync<JsonElement>()).Str("code"));

        // Started before the logout, which is when the address is released: the quarantine is measured from no later.
        var released = System.Diagnostics.Stopwatch.StartNew();
        Assert.Equal(HttpStatusCode.NoContent, await Gateway.LogoutAsync(firstToken));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await Gateway.PostRegisterAsync(key)).StatusCode);

        JsonElement? next = null;
        await Poll.UntilAsync(async () =>
        {
            var response = await Gateway.PostRegisterAsync(key);
            if (response.StatusCode == HttpStatusCode.OK)
            {
                next = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("node");
                return true;
            }

            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            return false;
        }, TimeSpan.FromSeconds(15), "the quarantine to end", everyMs: 250);

        Assert.True(released.Elapsed >= TimeSpan.FromSeconds(3), $"reused after {released.Elapsed}");
        Assert.Equal(first.Str("ipv4"), next!.Value.Str("ipv4"));
        Assert.NotEqual(first.Str("id"), next.Value.Str("id"));
    }
}
