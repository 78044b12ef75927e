using EphemeralOrleans.Grains.Nodes;

namespace EphemeralOrleans.Tests;

/// <summary>A node grain's timer policy: one check at the moment that matters, and none while nothing can happen.</summary>
public sealed class NodeChecksTests
{
    private static readonly DateTimeOffset Deadline = new(2026, 12, 7, 12, 0, 0, TimeSpan.Zero);
    private static readonly DateTimeOffset Until = Deadline.AddMinutes(-5);

    [Fact]
    public void An_offline_ephemeral_node_is_checked_once_at_its_deadline()
    {
        Assert.Equal(Deadline, NodeChecks.Next(exists: true, unconfirmedUntil: null, online: false, ephemeral: true, Deadline));
    }

    [Fact]
    public void An_online_node_and_an_offline_durable_one_hold_no_timer()
    {
        Assert.Null(NodeChecks.Next(exists: true, unconfirmedUntil: null, online: true, ephemeral: true, Deadline));
        Assert.Null(NodeChecks.Next(exists: true, unconfirmedUntil: null, online: false, ephemeral: false, Deadline));
    }

    [Fact]
    public void Sessions_to_confirm_come_first_even_for_a_durable_node()
    {
        Assert.Equal(Until, NodeChecks.Next(exists: true, Until, online: true, ephemeral: false, Deadline));
        Assert.Equal(Until, NodeChecks.Next(exists: true, Until, online: true, ephemeral: true, Deadline));
    }

    [Fact]
    public void A_removed_node_holds_none()
    {
        Assert.Null(NodeChecks.Next(exists: false, Until, online: false, ephemeral: true, Deadline));
    }
}
