using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Validation;
using EphemeralOrleans.Tests.Infrastructure;
using Xunit.Abstractions;

namespace EphemeralOrleans.Tests;

/// <summary>
/// No grain for a stranger: made-up auth keys and node tokens — well-formed, naming ids no gateway issued — are refused
/// as before (401, the same codes) without activating a grain, so a flood of them leaves the silo's activations flat.
/// Keys and nodes issued before ids were sealed keep working.
/// </summary>
public sealed class StrangerTests(ITestOutputHelper log) : GatewayTest
{
    /// <summary>Made-up registrations and as many made-up logouts; <c>EO_STRANGER_FLOOD</c> sets it (40,000 for the
    /// figures in docs/reliability.md).</summary>
    private static readonly int Flood = int.TryParse(Environment.GetEnvironmentVariable("EO_STRANGER_FLOOD"), out var n) ? n : 2_000;

    [Fact]
    public async Task Made_up_keys_and_tokens_are_refused_without_a_grain_and_ids_from_before_sealing_still_work()
    {
        var grains = Gateway.Service<IGrainFactory>();

        // Issued before ids were sealed, as an older gateway did: a 12-character key id and an unsealed node id.
        const string legacyKeyId = "LegacyKey123";
        await grains.GetGrain<ITailnetGrain>(Identifiers.DefaultTailnet).AddKey(legacyKeyId);
        var legacyKey = (await grains.GetGrain<IAuthKeyGrain>(legacyKeyId).Create(Identifiers.DefaultTailnet, new AuthKeySpec(true, false, true, [], null, "old")))!.Key;
        var legacyNodeKey = TestGateway.NewNodeKey();
        var grant = (await grains.GetGrain<IAuthKeyGrain>(legacyKeyId).Redeem(legacyKey.Split('-')[3])).Grant!;
        var legacyNode = await grains.GetGrain<INodeGrain>(NodeIds.GrainKeyFor(Identifiers.DefaultTailnet, legacyNodeKey))
            .Register(new RegisterCommand(legacyNodeKey, "legacy", false, grant));
        Assert.Equal(NodeIds.UnsealedLength, legacyNode.Node!.Id.Length);

        // Issued now: sealed ids.
        var key = (await Gateway.CreateKeyAsync(ephemeral: false)).Str("key");
        var (node, token) = await Gateway.RegisterAsync(key, hostname: "current");
        Assert.Equal(NodeIds.SealedLength, node.Str("id").Length);

        var before = await ActivationsAsync(grains);
        Assert.True(before.Nodes >= 2 && before.Keys >= 2, $"the statistics show {before.Nodes} node and {before.Keys} key grains for two of each");
        GC.Collect();
        var memoryBefore = GC.GetTotalMemory(forceFullCollection: true);
        var clock = Stopwatch.StartNew();
        var refusals = await Task.WhenAll(Enumerable.Range(0, 32).Select(worker => Task.Run(async () =>
        {
            var codes = new Dictionary<string, int>();
            for (var i = worker; i < Flood; i += 32)
            {
                // Key ids of both lengths; node ids of both lengths, with the grain key of a real node half the time.
                var keyId = Secrets.Base62(i % 2 == 0 ? 20 : 12);
                var register = await Gateway.TryRegisterAsync($"eo-auth-{keyId}-{Secrets.Base62(32)}");
                Count(codes, $"register {(int)register.Status} {register.Code}");
                var grainKey = i % 4 < 2 ? node.Str("id")[..16] : NodeIds.GrainKeyFor("default", TestGateway.NewNodeKey());
                var nodeId = $"{grainKey}-{Secrets.Base32(RandomNumberGenerator.GetBytes(i % 2 == 0 ? 10 : 5))}";
                Count(codes, $"logout {(int)await Gateway.LogoutAsync($"{nodeId}.{Secrets.Base62(43)}")}");
            }

            return codes;
        })));
        var elapsed = clock.Elapsed;
        var after = await ActivationsAsync(grains);
        var memoryAfter = GC.GetTotalMemory(forceFullCollection: true);
        var codes = refusals.SelectMany(c => c).GroupBy(c => c.Key).ToDictionary(g => g.Key, g => g.Sum(c => c.Value));
        log.WriteLine($"{Flood} made-up registrations and {Flood} made-up logouts in {elapsed.TotalSeconds:F1} s: "
            + string.Join(", ", codes.Select(c => $"{c.Key} ×{c.Value}")));
        log.WriteLine($"activations {before.Total} → {after.Total} (node grains {before.Nodes} → {after.Nodes}, key grains {before.Keys} → {after.Keys}); "
            + $"test process managed heap {memoryBefore / 1048576.0:F1} → {memoryAfter / 1048576.0:F1} MiB");

        Assert.Equal(new Dictionary<string, int> { ["register 401 invalid_key"] = Flood, ["logout 401"] = Flood }, codes);
        Assert.Equal(before.Nodes, after.Nodes);
        Assert.Equal(before.Keys, after.Keys);
        Assert.True(after.Total - before.Total <= 10, $"{after.Total - before.Total} activations added by the flood");

        // Real credentials, old and new, work as before; a real key id with a wrong secret is still the key's refusal.
        Assert.Equal(HttpStatusCode.OK, (await Gateway.SetEndpointsAsync(token, "198.18.0.2:41641")).Status);
        Assert.Equal(HttpStatusCode.OK, (await Gateway.SetEndpointsAsync(legacyNode.NodeToken!, "198.18.0.3:41641")).Status);
        Assert.Equal(NodeIds.SealedLength, (await Gateway.RegisterAsync(legacyKey, hostname: "from-old-key")).Node.Str("id").Length);
        Assert.Equal((HttpStatusCode.Unauthorized, "invalid_key"), (await Gateway.TryRegisterAsync(key[..^3] + "xyz")) is var r ? (r.Status, r.Code) : default);
        Assert.Equal(HttpStatusCode.NoContent, await Gateway.LogoutAsync(token));
    }

    private static void Count(Dictionary<string, int> codes, string code) => codes[code] = codes.GetValueOrDefault(code) + 1;

    private static async Task<(int Total, int Nodes, int Keys)> ActivationsAsync(IGrainFactory grains)
    {
        var statistics = await grains.GetGrain<IManagementGrain>(0).GetSimpleGrainStatistics();
        int Of(string type) => statistics.Where(s => s.GrainType.Contains(type, StringComparison.OrdinalIgnoreCase)).Sum(s => s.ActivationCount);
        return (statistics.Sum(s => s.ActivationCount), Of("NodeGrain"), Of("AuthKeyGrain"));
    }
}
