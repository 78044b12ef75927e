using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Gateway.Map;

namespace EphemeralOrleans.Tests;

/// <summary>A slow or stuck agent's stream: deltas merge while they wait, and a stream too far behind is reset with a
/// fresh full map instead of holding anything up.</summary>
public sealed class MapStreamQueueTests
{
    private static readonly TimeSpan Silence = TimeSpan.FromSeconds(5);

    private static NodeView Node(string id, bool online = false) =>
        new(id, id, id, "nodekey:" + new string('0', 64), "100.64.0.1", "fd7a:115c:a1e0::1", true, [], online, null,
            DateTimeOffset.UnixEpoch, true, false, "key", "default");

    private static MapDelta Delta(long version, NodeView[]? changed = null, string[]? removed = null, PeerPatch[]? patches = null) =>
        new(version, changed ?? [], removed ?? []) { PeersChangedPatch = patches };

    [Fact]
    public async Task Deltas_waiting_for_a_slow_agent_merge_into_one_with_the_same_effect()
    {
        var stream = new MapStream(Node("self"), 0, maxPendingEntries: 100);
        stream.Enqueue(Delta(1, changed: [Node("a"), Node("b")]));
        stream.Enqueue(Delta(2, removed: ["a"], patches: [new PeerPatch("b", true, DateTimeOffset.UnixEpoch)]));
        stream.Enqueue(Delta(3, changed: [Node("c")], patches: [new PeerPatch("d", true, null)]));

        var merged = Assert.IsType<MapDelta>(await stream.NextAsync(Silence, () => throw new InvalidOperationException(), CancellationToken.None));
        Assert.Equal(3, merged.Version);
        Assert.Equal(["b", "c"], merged.PeersChanged.Select(n => n.Id).Order());
        Assert.True(merged.PeersChanged.Single(n => n.Id == "b").Online); // the patch folded into the whole peer
        Assert.Equal(["a"], merged.PeersRemoved);
        Assert.Equal("d", Assert.Single(merged.PeersChangedPatch!).Id);
    }

    [Fact]
    public async Task A_stream_too_far_behind_gets_a_fresh_full_map_and_nothing_stale()
    {
        var stream = new MapStream(Node("self"), 0, maxPendingEntries: 10);
        for (var version = 1; version <= 20; version++)
        {
            stream.Enqueue(Delta(version, changed: [Node($"n{version}")]));
        }

        var fresh = new FullMap(20, Node("self"), [Node("n20")], []);
        Assert.Same(fresh, await stream.NextAsync(Silence, () => fresh, CancellationToken.None));

        // Nothing else waits: the next read is a keepalive after the silence.
        Assert.IsType<KeepAlive>(await stream.NextAsync(TimeSpan.FromMilliseconds(50), () => fresh, CancellationToken.None));
    }

    [Fact]
    public async Task An_agent_that_keeps_up_gets_each_delta_as_sent_and_a_closed_stream_ends()
    {
        var stream = new MapStream(Node("self"), 0, maxPendingEntries: 1);
        var first = Delta(1, changed: [Node("a"), Node("b"), Node("c")]); // larger than the bound, but nothing waits before it
        stream.Enqueue(first);
        Assert.Same(first, await stream.NextAsync(Silence, () => throw new InvalidOperationException(), CancellationToken.None));
        stream.Close("node removed");
        Assert.Null(await stream.NextAsync(Silence, () => throw new InvalidOperationException(), CancellationToken.None));
        Assert.Equal("node removed", stream.ClosedBecause);
    }
}
