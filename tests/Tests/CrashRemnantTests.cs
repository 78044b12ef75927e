using System.Net;
using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Validation;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>
/// What a registration that died half-way leaves behind heals by itself: a lease held by a node that was never stored
/// is reclaimed, and a registry entry of such a node is dropped. Simulated by making the first step's call directly.
/// </summary>
public sealed class CrashRemnantTests : GatewayTest
{
    [Fact]
    public async Task A_lease_whose_holder_was_never_stored_is_reclaimed_after_the_quarantine()
    {
        var grains = Gateway.Service<IGrainFactory>();
        var lease = grains.GetGrain<IAddressLeaseGrain>(AddressPool.LeaseKey("remnants", 0x64400105));
        var ghost = NodeIds.NewNodeId(NodeIds.GrainKeyFor("remnants", TestGateway.NewNodeKey()));
        var other = NodeIds.NewNodeId(NodeIds.GrainKeyFor("remnants", TestGateway.NewNodeKey()));
        Assert.Equal(LeaseOutcome.Acquired, await lease.Acquire(ghost));

        // The ghost does not hold it: the lease is freed, but only handed out after the quarantine (2 s here).
        Assert.Equal(LeaseOutcome.Quarantined, await lease.Acquire(other));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await Poll.UntilAsync(async () => await lease.Acquire(other) == LeaseOutcome.Acquired, TimeSpan.FromSeconds(10), "the reclaimed lease", everyMs: 200);
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(1.9), $"reused after {clock.Elapsed}");
        Assert.NotEqual(LeaseOutcome.Acquired, await lease.Acquire(ghost));
    }

    [Fact]
    public async Task A_lease_held_by_a_live_node_is_never_taken()
    {
        var key = (await Gateway.CreateKeyAsync(tailnet: "remnants2")).Str("key");
        var (node, _) = await Gateway.RegisterAsync(key);
        var address = AddressPool.ToUInt32(System.Net.IPAddress.Parse(node.Str("ipv4")));
        var lease = Gateway.Service<IGrainFactory>().GetGrain<IAddressLeaseGrain>(AddressPool.LeaseKey("remnants2", address));
        var intruder = NodeIds.NewNodeId(NodeIds.GrainKeyFor("remnants2", TestGateway.NewNodeKey()));
        Assert.Equal(LeaseOutcome.Taken, await lease.Acquire(intruder));
        Assert.Equal(LeaseOutcome.Taken, await lease.Acquire(intruder));
    }

    [Fact]
    public async Task A_registry_entry_whose_node_was_never_stored_is_dropped()
    {
        var key = (await Gateway.CreateKeyAsync(ephemeral: false, tailnet: "remnants3")).Str("key");
        var (real, _) = await Gateway.RegisterAsync(key, hostname: "real");
        var tailnet = Gateway.Service<IGrainFactory>().GetGrain<ITailnetGrain>("remnants3");
        var ghostId = NodeIds.NewNodeId(NodeIds.GrainKeyFor("remnants3", TestGateway.NewNodeKey()));
        var ghost = new NodeEntry(new NodeRecord(ghostId, "", "ghost", TestGateway.NewNodeKey(), IPAddress.Parse("100.64.9.9"), AddressPool.Ipv6Address(0x64400909),
            true, ValueList<string>.Empty, DateTimeOffset.UtcNow, true, false, "k", "remnants3", 0), new NodePresence(false, null));
        Assert.Equal("ghost", await tailnet.Upsert(ghost));
        Assert.Contains(await Gateway.ListNodesAsync("remnants3"), n => n.Str("id") == ghostId);

        await Poll.UntilAsync(async () => !(await Gateway.ListNodesAsync("remnants3")).Any(n => n.Str("id") == ghostId),
            TimeSpan.FromSeconds(30), "the ghost entry to be dropped", everyMs: 500);
        Assert.Contains(await Gateway.ListNodesAsync("remnants3"), n => n.Str("id") == real.Str("id"));
    }
}
