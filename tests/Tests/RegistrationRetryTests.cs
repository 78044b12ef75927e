using System.Net;
using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Validation;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>
/// What makes a registration safe for the gateway to retry after a silo failure (FaultTests kills one): the steps that
/// had completed before the answer was lost — the key counted a use, the node was made — recognise the retry by its
/// request id instead of doing it twice or refusing it. Played here on the grains, as the gateway's retry plays them.
/// </summary>
public sealed class RegistrationRetryTests : GatewayTest
{
    [Fact]
    public async Task A_retried_redemption_of_a_single_use_key_is_granted_again_and_counted_once()
    {
        var key = await Gateway.CreateKeyAsync(reusable: false, ephemeral: false);
        Assert.True(Identifiers.TryAuthKey(key.Str("key"), out var keyId, out var secret));
        var grain = Gateway.Service<IGrainFactory>().GetGrain<IAuthKeyGrain>(keyId);

        Assert.NotNull((await grain.Redeem(secret, "request-1")).Grant);
        Assert.NotNull((await grain.Redeem(secret, "request-1")).Grant); // the same registration, retried
        Assert.Equal("key_used", (await grain.Redeem(secret, "request-2")).Failure?.Code); // another one
        Assert.Equal("key_used", (await grain.Redeem(secret)).Failure?.Code);
        Assert.Equal(1, (await Gateway.GetKeyAsync(key.Str("id"))).Body.GetProperty("uses").GetInt32());
    }

    [Fact]
    public async Task A_retried_registration_gets_its_node_with_a_new_token_and_another_registration_still_needs_proof()
    {
        var key = await Gateway.CreateKeyAsync(reusable: true, ephemeral: false);
        Assert.True(Identifiers.TryAuthKey(key.Str("key"), out var keyId, out var secret));
        var grant = (await Gateway.Service<IGrainFactory>().GetGrain<IAuthKeyGrain>(keyId).Redeem(secret, "request-1")).Grant!;
        var nodeKey = ApiClient.NewNodeKey();
        var grainKey = NodeIds.GrainKeyFor(grant.Tailnet, nodeKey);
        var node = Gateway.Service<IGrainFactory>().GetGrain<INodeGrain>(grainKey);
        var command = new RegisterCommand(nodeKey, "retried", false, grant)
        {
            RequestId = "request-1",
            Attempt = 1,
            NewNodeId = await Gateway.Service<EphemeralOrleans.Gateway.Application.IdSeal>().NewNodeIdAsync(grainKey),
        };

        var first = await node.Register(command);
        var retried = await node.Register(command with { Attempt = 2 });
        Assert.Null(retried.Failure);
        Assert.Equal(first.Node!.Record.Id, retried.Node!.Record.Id);
        Assert.NotEqual(first.NodeToken, retried.NodeToken);
        // The token that was lost with the first answer is void; the retry's works.
        Assert.Equal(HttpStatusCode.Unauthorized, (await Gateway.SetEndpointsAsync(first.NodeToken!)).Status);
        Assert.Equal(HttpStatusCode.OK, (await Gateway.SetEndpointsAsync(retried.NodeToken!)).Status);
        Assert.Single(await Gateway.ListNodesAsync(), n => n.Str("hostname") == "retried");

        // The first attempt arriving again late (the gateway had given up on it) changes nothing: the token it answered with stands.
        Assert.Equal("registration_superseded", (await node.Register(command)).Failure?.Code);
        Assert.Equal(HttpStatusCode.OK, (await Gateway.SetEndpointsAsync(retried.NodeToken!)).Status);

        // A registration with another request id is a takeover attempt as ever: refused without proof or token.
        var other = await node.Register(new RegisterCommand(nodeKey, "retried", false, grant) { RequestId = "request-2" });
        Assert.Equal("proof_required", other.Failure?.Code);
        Assert.Equal("proof_required", (await node.Register(new RegisterCommand(nodeKey, "retried", false, grant))).Failure?.Code);
    }
}
