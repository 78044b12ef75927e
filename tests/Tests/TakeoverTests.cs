using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using EphemeralOrleans.Protocol;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>
/// Node keys are public: every peer's netmap carries them. These tests try what a holder of some auth key and a
/// stolen node key would try, over HTTP and gRPC, and check that registering a node key that has a node needs proof
/// of its private key (or the node's token), and that a refused attempt changes nothing.
/// </summary>
public sealed class TakeoverTests : GatewayTest
{
    private static readonly TimeSpan Within = TimeSpan.FromSeconds(10);

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task A_stolen_node_key_and_another_key_get_no_token_and_leave_the_node_its_tags_token_and_stream(Transport transport)
    {
        var api = Gateway.Over(transport);
        var tailnet = $"takeover-{transport}".ToLowerInvariant();
        Assert.Equal(HttpStatusCode.OK, (await Gateway.Admin.PatchAsync($"/api/v1/tailnets/{tailnet}/settings",
            JsonContent.Create(new { deviceApproval = true }))).StatusCode);
        var prodKey = await api.CreateKeyAsync(reusable: true, ephemeral: false, preauthorized: true, tags: ["tag:prod"], tailnet: tailnet);
        var ciKey = (await api.CreateKeyAsync(reusable: true, ephemeral: false, preauthorized: false, tags: ["tag:ci"], tailnet: tailnet)).Str("key");
        var victim = TestDevice.Create();
        var (node, token) = await api.RegisterDeviceAsync(prodKey.Str("key"), victim, "prod-db");
        await using var stream = await api.OpenMapAsync(token);
        await stream.WaitForAsync(m => m.Type() == "full", Within, "the victim's full map");

        var thief = TestDevice.Create();
        var controlKey = await api.ControlKeyAsync();
        var attempts = new (string What, Reply Reply, HttpStatusCode Status, string Code)[]
        {
            ("the node key alone", await api.TryRegisterAsync(ciKey, victim.NodeKey, "prod-db"), HttpStatusCode.Unauthorized, "proof_required"),
            ("a proof made with the thief's own private key",
                await api.TryRegisterAsync(ciKey, victim.NodeKey, "prod-db", proof: thief.Prove(controlKey, ciKey, "prod-db", claiming: victim.NodeKey)),
                HttpStatusCode.Unauthorized, "invalid_proof"),
            ("a random MAC",
                await api.TryRegisterAsync(ciKey, victim.NodeKey, "prod-db", proof: new RegistrationProof(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), RandomNumberGenerator.GetBytes(32))),
                HttpStatusCode.Unauthorized, "invalid_proof"),
            ("a made-up token for the node",
                await api.TryRegisterAsync(ciKey, victim.NodeKey, "prod-db", nodeToken: $"{node.Str("id")}.{new string('A', 43)}"), HttpStatusCode.Unauthorized, "proof_required"),
            ("the victim's own key without a proof",
                await api.TryRegisterAsync(prodKey.Str("key"), victim.NodeKey, "prod-db"), HttpStatusCode.Unauthorized, "proof_required"),
        };
        foreach (var (what, reply, status, code) in attempts)
        {
            Assert.True((reply.Status, reply.Code) == (status, code), $"{what}: {reply.Status} {reply.Code}, expected {status} {code}");
            Assert.False(reply.Body.ValueKind == JsonValueKind.Object && reply.Body.TryGetProperty("nodeToken", out _), $"{what}: a token was handed out");
        }

        // The node is as it was: its tags, its key, its approval, its address; online on its stream.
        var after = (await api.GetNodeAsync(node.Str("id"), tailnet))!.Value;
        Assert.Equal(["tag:prod"], after.GetProperty("tags").EnumerateArray().Select(t => t.GetString()));
        Assert.Equal(prodKey.Str("id"), after.Str("keyId"));
        Assert.True(after.GetProperty("authorized").GetBoolean());
        Assert.Equal(node.Str("ipv4"), after.Str("ipv4"));
        Assert.True(after.GetProperty("online").GetBoolean());
        Assert.Single(await api.ListNodesAsync(tailnet));

        // Its token still works and its stream still carries the tailnet's changes.
        var (bystander, _) = await api.RegisterDeviceAsync(prodKey.Str("key"), TestDevice.Create(), "bystander");
        await stream.WaitForAsync(m => m.Type() == "delta" && m.Ids("peersChanged").Contains(bystander.Str("id")), Within, "a new peer on the victim's stream");
        await using var second = await api.OpenMapAsync(token);
        await second.WaitForAsync(m => m.Type() == "full", Within, "a second stream on the victim's token");
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task A_proof_holds_once_for_its_key_and_time_and_a_refused_proof_costs_the_key_no_use(Transport transport)
    {
        var api = Gateway.Over(transport);
        var key = (await api.CreateKeyAsync(reusable: true, ephemeral: false)).Str("key");
        var otherKey = (await api.CreateKeyAsync(reusable: true, ephemeral: false)).Str("key");
        var device = TestDevice.Create();
        var controlKey = await api.ControlKeyAsync();

        var first = device.Prove(controlKey, key, "laptop");
        var registered = await api.TryRegisterAsync(key, device.NodeKey, "laptop", proof: first);
        Assert.Equal(HttpStatusCode.OK, registered.Status);
        var nodeId = registered.Body.GetProperty("node").Str("id");
        var oldToken = registered.Body.Str("nodeToken");

        // The same request again: its proof was used.
        AssertRefused(await api.TryRegisterAsync(key, device.NodeKey, "laptop", proof: first), HttpStatusCode.Unauthorized, "proof_replayed");
        // A proof binds the auth key and the fields it was made for.
        AssertRefused(await api.TryRegisterAsync(otherKey, device.NodeKey, "laptop", proof: device.Prove(controlKey, key, "laptop")),
            HttpStatusCode.Unauthorized, "invalid_proof");
        AssertRefused(await api.TryRegisterAsync(key, device.NodeKey, "desktop", proof: device.Prove(controlKey, key, "laptop")),
            HttpStatusCode.Unauthorized, "invalid_proof");
        AssertRefused(await api.TryRegisterAsync(key, device.NodeKey, "laptop", ephemeral: true, proof: device.Prove(controlKey, key, "laptop")),
            HttpStatusCode.Unauthorized, "invalid_proof");
        // Outside the clock window, and malformed.
        var singleUse = await api.CreateKeyAsync(reusable: false, ephemeral: false);
        AssertRefused(await api.TryRegisterAsync(singleUse.Str("key"), device.NodeKey, "laptop",
            proof: device.Prove(controlKey, singleUse.Str("key"), "laptop", at: DateTimeOffset.UtcNow.AddMinutes(-10))), HttpStatusCode.Unauthorized, "proof_clock_skew");
        AssertRefused(await api.TryRegisterAsync(singleUse.Str("key"), device.NodeKey, "laptop", proof: new RegistrationProof(1, new byte[5])),
            HttpStatusCode.BadRequest, "malformed_proof");
        Assert.Equal(0, (await api.GetKeyAsync(singleUse.Str("id"))).Body.GetProperty("uses").GetInt32());

        // A fresh proof re-registers: the same node, a new token, the old one void.
        var second = device.Prove(controlKey, singleUse.Str("key"), "laptop");
        var again = await api.TryRegisterAsync(singleUse.Str("key"), device.NodeKey, "laptop", proof: second);
        Assert.Equal(HttpStatusCode.OK, again.Status);
        Assert.Equal(nodeId, again.Body.GetProperty("node").Str("id"));
        Assert.Equal(singleUse.Str("id"), again.Body.GetProperty("node").Str("keyId"));
        Assert.Equal((HttpStatusCode.Unauthorized, "invalid_token"), Status(await api.TryOpenMapAsync(oldToken)));

        // Neither it, nor a proof older than it, works again.
        AssertRefused(await api.TryRegisterAsync(key, device.NodeKey, "laptop", proof: device.Prove(controlKey, key, "laptop", at: DateTimeOffset.FromUnixTimeMilliseconds(second.Timestamp - 1000))),
            HttpStatusCode.Unauthorized, "proof_replayed");
        Assert.Single(await api.ListNodesAsync());
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task The_nodes_current_token_also_registers_it_again_and_the_new_key_is_recorded_with_its_tags(Transport transport)
    {
        var api = Gateway.Over(transport);
        var tailnet = $"retag-{transport}".ToLowerInvariant();
        var before = await api.CreateKeyAsync(ephemeral: false, tags: ["tag:before"], tailnet: tailnet);
        var after = await api.CreateKeyAsync(ephemeral: false, tags: ["tag:after"], tailnet: tailnet);
        var nodeKey = ApiClient.NewNodeKey();
        var (node, token) = await api.RegisterAsync(before.Str("key"), nodeKey, "runner");

        var again = await api.TryRegisterAsync(after.Str("key"), nodeKey, "runner", nodeToken: token);
        Assert.Equal(HttpStatusCode.OK, again.Status);
        var renewed = again.Body.GetProperty("node");
        Assert.Equal(node.Str("id"), renewed.Str("id"));
        Assert.Equal(after.Str("id"), renewed.Str("keyId"));
        Assert.Equal(["tag:after"], renewed.GetProperty("tags").EnumerateArray().Select(t => t.GetString()));

        // The token it replaced is void for this too.
        AssertRefused(await api.TryRegisterAsync(after.Str("key"), nodeKey, "runner", nodeToken: token), HttpStatusCode.Unauthorized, "proof_required");
    }

    [Fact]
    public async Task The_control_key_is_one_key_over_both_transports()
    {
        var overHttp = await Gateway.ControlKeyAsync();
        Assert.True(KeyText.TryParse(overHttp, KeyText.ControlKeyPrefix, out _), overHttp);
        Assert.Equal(overHttp, await Gateway.Over(Transport.Grpc).ControlKeyAsync());
    }

    private static (HttpStatusCode, string?) Status(Reply reply) => (reply.Status, reply.Code);

    private static void AssertRefused(Reply reply, HttpStatusCode status, string code) =>
        Assert.True((reply.Status, reply.Code) == (status, code), $"expected {(int)status} {code}, got {(int)reply.Status} {reply.Code}: {reply.Detail}");
}
