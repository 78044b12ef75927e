using System.Diagnostics;
using System.Net;
using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Validation;
using EphemeralOrleans.Tests.Infrastructure;
using Orleans.Core.Internal;

namespace EphemeralOrleans.Tests;

/// <summary>
/// Inactivity removal with a 2-second timeout. The contract: never before the timeout, no later than timeout + max(10%, 2 s).
/// Measured times carry the polling and HTTP overhead on top, hence a small tolerance on the upper bound only.
/// </summary>
[Collection(TimingCollection.Name)]
public sealed class InactivityTests : GatewayTest
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan Slack = TimeSpan.FromSeconds(2);
    /// <summary>The harness's own delays on top of the contract's bound (polling, the API call that observes the removal,
    /// a collection or a neighbouring process exiting on two cores). Removals over HTTP used to come 2 s late, once past
    /// this: HttpClient drained the closed map stream for 2 s before closing its connection (now off, in the agent too).
    /// A removal one reminder period late (2 s) still fails.</summary>
    private static readonly TimeSpan Tolerance = TimeSpan.FromSeconds(1.5);
    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task A_node_that_never_connects_is_removed_after_the_timeout_and_not_before(Transport transport)
    {
        var api = Gateway.Over(transport);
        var key = (await api.CreateKeyAsync(ephemeral: true)).Str("key");
        var clock = Stopwatch.StartNew();
        var (node, _) = await api.RegisterAsync(key);

        // The clock started before the registration, so it can only overstate the time since the node was created.
        await WaitRemovedAsync(node.Str("id"));
        Assert.True(clock.Elapsed >= Timeout, $"removed after {clock.Elapsed}, before the timeout");
        Assert.True(clock.Elapsed <= Timeout + Slack + Tolerance, $"removed after {clock.Elapsed}");
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task A_connected_node_is_never_removed_and_goes_once_its_stream_closes(Transport transport)
    {
        var api = Gateway.Over(transport);
        var key = (await api.CreateKeyAsync(ephemeral: true)).Str("key");
        var (node, token) = await api.RegisterAsync(key);
        var map = await api.OpenMapAsync(token);
        await map.WaitForAsync(m => m.Type() == "full", TimeSpan.FromSeconds(10), "full map");

        // Three timeouts connected: still there, and online.
        var connected = Stopwatch.StartNew();
        while (connected.Elapsed < 3 * Timeout)
        {
            var listed = await api.GetNodeAsync(node.Str("id"));
            Assert.True(listed is not null, $"removed while connected, after {connected.Elapsed}");
            await Task.Delay(200);
        }

        Assert.True((await api.GetNodeAsync(node.Str("id")))!.Value.GetProperty("online").GetBoolean());

        // Started before the agent closes its stream (the gateway sees it close later): it can only overstate the offline time.
        var closed = Stopwatch.StartNew();
        await map.DisposeAsync();
        await WaitRemovedAsync(node.Str("id"));
        Assert.True(closed.Elapsed >= Timeout, $"removed {closed.Elapsed} after the stream closed");
        Assert.True(closed.Elapsed <= Timeout + Slack + Tolerance, $"removed {closed.Elapsed} after the stream closed");
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task Logout_removes_an_ephemeral_node_at_once_and_frees_its_token(Transport transport)
    {
        var api = Gateway.Over(transport);
        var key = (await api.CreateKeyAsync(ephemeral: true)).Str("key");
        var (node, token) = await api.RegisterAsync(key);
        Assert.Equal(HttpStatusCode.NoContent, await api.LogoutAsync(token));
        Assert.Null(await api.GetNodeAsync(node.Str("id")));
        Assert.DoesNotContain(await api.ListNodesAsync(), n => n.Str("id") == node.Str("id"));
        Assert.Equal(HttpStatusCode.Unauthorized, await api.LogoutAsync(token));
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task An_ephemeral_registration_on_a_non_ephemeral_key_yields_an_ephemeral_node(Transport transport)
    {
        var api = Gateway.Over(transport);
        var key = (await api.CreateKeyAsync(ephemeral: false)).Str("key");
        var (memState, _) = await api.RegisterAsync(key, hostname: "ci-job", ephemeral: true);
        var (durable, _) = await api.RegisterAsync(key, hostname: "server", ephemeral: false);
        Assert.True(memState.GetProperty("ephemeral").GetBoolean());
        Assert.False(durable.GetProperty("ephemeral").GetBoolean());

        await WaitRemovedAsync(memState.Str("id"));
        // The non-ephemeral node, offline just as long, stays.
        Assert.NotNull(await api.GetNodeAsync(durable.Str("id")));
    }

    [Fact]
    public async Task A_session_whoseGateway_stops_renewing_it_counts_as_offline_from_the_end_of_its_lease()
    {
        // Stands in for a gateway killed with the agent's stream open: the session is opened and then never renewed.
        var key = (await Gateway.CreateKeyAsync(ephemeral: true)).Str("key");
        var (node, token) = await Gateway.RegisterAsync(key);
        Assert.True(NodeIds.TryToken(token, out var nodeId, out var secret));
        Assert.True(NodeIds.TryGrainKey(nodeId, out var grainKey));
        var grain = Gateway.Service<IGrainFactory>().GetGrain<INodeGrain>(grainKey);
        var clock = Stopwatch.StartNew();
        Assert.NotNull(await grain.OpenSession(nodeId, secret, "orphaned-stream", "a-gateway-that-never-renews"));

        await WaitRemovedAsync(node.Str("id"));
        // The session's lease (1 s at this timeout), then the timeout: never earlier than the last sign of life + lease + timeout.
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(1) + Timeout, $"removed after {clock.Elapsed}");
        Assert.True(clock.Elapsed <= TimeSpan.FromSeconds(1) + Timeout + Slack + Tolerance, $"removed after {clock.Elapsed}");
    }

    [Fact]
    public async Task A_node_whose_grain_was_deactivated_is_removed_by_its_reminder()
    {
        var key = (await Gateway.CreateKeyAsync(ephemeral: true)).Str("key");
        var clock = Stopwatch.StartNew();
        var (node, _) = await Gateway.RegisterAsync(key);
        await DeactivateAsync(node.Str("id"));

        // Polled through the registry, which does not wake the node grain: only its reminder (2 s period) can.
        await Poll.UntilAsync(async () => !(await Gateway.ListNodesAsync()).Any(n => n.Str("id") == node.Str("id")),
            TimeSpan.FromSeconds(15), "the reminder to remove the node");
        Assert.True(clock.Elapsed >= Timeout, $"removed after {clock.Elapsed}");
        Assert.True(clock.Elapsed <= Timeout + Slack + TimeSpan.FromSeconds(2) + Tolerance, $"removed after {clock.Elapsed}");
    }

    [Fact]
    public async Task Re_registering_an_offline_ephemeral_node_restarts_its_clock()
    {
        var key = (await Gateway.CreateKeyAsync(ephemeral: true)).Str("key");
        var device = TestDevice.Create();
        var (node, _) = await Gateway.RegisterDeviceAsync(key, device);
        await Task.Delay(Timeout * 0.6); // most of its time, offline

        // Started before the registration reaches the node: it can only overstate the time since.
        var again = Stopwatch.StartNew();
        var (same, _) = await Gateway.RegisterDeviceAsync(key, device);
        Assert.Equal(node.Str("id"), same.Str("id"));
        await WaitRemovedAsync(node.Str("id"));
        // Not at its first deadline (0.8 s after the second registration): the registration counted as activity.
        Assert.True(again.Elapsed >= Timeout, $"removed {again.Elapsed} after registering again");
        Assert.True(again.Elapsed <= Timeout + Slack + Tolerance, $"removed {again.Elapsed} after registering again");
    }

    [Fact]
    public async Task A_connected_node_whose_grain_restarts_stays_online_through_its_gateways_lease_and_goes_once_its_stream_closes()
    {
        var key = (await Gateway.CreateKeyAsync(ephemeral: true)).Str("key");
        var (node, token) = await Gateway.RegisterAsync(key);
        var map = await Gateway.OpenMapAsync(token);
        await map.WaitForAsync(m => m.Type() == "full", TimeSpan.FromSeconds(10), "full map");
        // The grain forgets its sessions (as after its silo's failure); nothing renews them per stream any more.
        var grain = await DeactivateAsync(node.Str("id"));
        Assert.NotNull(await grain.GetEntry(node.Str("id"))); // back: it asks the gateway's lease which sessions stand

        // Three timeouts later: still there, and online throughout.
        var connected = Stopwatch.StartNew();
        while (connected.Elapsed < 3 * Timeout)
        {
            var listed = await Gateway.GetNodeAsync(node.Str("id"));
            Assert.True(listed is not null, $"removed while connected, after {connected.Elapsed}");
            Assert.True(listed.Value.GetProperty("online").GetBoolean(), $"offline while connected, after {connected.Elapsed}");
            await Task.Delay(200);
        }

        // The stream it took back from the lease is the one that closes.
        var closed = Stopwatch.StartNew();
        await map.DisposeAsync();
        await WaitRemovedAsync(node.Str("id"));
        Assert.True(closed.Elapsed >= Timeout, $"removed {closed.Elapsed} after the stream closed");
        Assert.True(closed.Elapsed <= Timeout + Slack + Tolerance, $"removed {closed.Elapsed} after the stream closed");
    }

    /// <summary>Deactivates a node's grain and waits until it is gone from the silo; calling it activates it again.</summary>
    private async Task<INodeGrain> DeactivateAsync(string nodeId)
    {
        var grains = Gateway.Service<IGrainFactory>();
        Assert.True(NodeIds.TryGrainKey(nodeId, out var grainKey));
        var grain = grains.GetGrain<INodeGrain>(grainKey);
        var management = grains.GetGrain<IManagementGrain>(0);
        var asked = Stopwatch.StartNew();
        var requests = 0;
        await Poll.UntilAsync(async () =>
        {
            if (requests == 0 || asked.Elapsed > TimeSpan.FromSeconds(2))
            {
                // Asked again while it stays: in two CI runs out of four a single request left the grain active.
                await grain.Cast<IGrainManagementExtension>().DeactivateOnIdle();
                requests++;
                asked.Restart();
            }

            return !(await management.GetDetailedGrainStatistics()).Any(a => a.GrainId == grain.GetGrainId());
        }, TimeSpan.FromSeconds(20), "the node grain to be deactivated", why: () => $"asked {requests} times");
        return grain;
    }

    private async Task<TimeSpan> WaitRemovedAsync(string nodeId) =>
        await Poll.UntilAsync(async () => await Gateway.GetNodeAsync(nodeId) is null, TimeSpan.FromSeconds(15), $"node {nodeId} to be removed");
}
