extern alias agent;
using agent::EphemeralOrleans.Agent.Dataplane;

namespace EphemeralOrleans.Tests;

/// <summary>When the agent gives up a direct path for the relay: only when this side keeps sending and hears nothing
/// back for the silence — not for a working connection, an idle peer, or a lone keepalive.</summary>
public sealed class PathMonitorTests
{
    private static readonly DateTimeOffset Start = new(2026, 12, 7, 12, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan Silence = TimeSpan.FromMilliseconds(1200);
    private static readonly TimeSpan Quiet = TimeSpan.FromSeconds(55);
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(500);
    private const string Peer = "peer";

    [Fact]
    public void A_path_that_carries_traffic_both_ways_is_never_broken()
    {
        var monitor = new PathMonitor(Silence, Quiet);
        for (var i = 0; i < 20; i++)
        {
            Assert.False(monitor.Broken(Peer, rxBytes: 1000 * i, txBytes: 50_000 * i, Start + i * Poll));
        }
    }

    [Fact]
    public void Sending_with_no_answer_breaks_the_path_once_the_silence_has_passed_counted_from_the_first_unanswered_send()
    {
        var monitor = new PathMonitor(Silence, Quiet);
        Assert.False(monitor.Broken(Peer, 1000, 5000, Start));
        Assert.False(monitor.Broken(Peer, 1000, 6000, Start + Poll)); // the first unanswered send seen
        Assert.False(monitor.Broken(Peer, 1000, 7000, Start + 2 * Poll));
        Assert.False(monitor.Broken(Peer, 1000, 7000, Start + 3 * Poll)); // 1,000 ms after it
        Assert.True(monitor.Broken(Peer, 1000, 7100, Start + 4 * Poll)); // 1,500 ms

        // An answer clears it.
        Assert.False(monitor.Broken(Peer, 1100, 7200, Start + 5 * Poll));
        Assert.False(monitor.Broken(Peer, 1100, 7300, Start + 6 * Poll));
    }

    [Fact]
    public void An_idle_peer_and_a_lone_unanswered_keepalive_are_not_a_broken_path()
    {
        var monitor = new PathMonitor(Silence, Quiet);
        Assert.False(monitor.Broken(Peer, 1000, 5000, Start));
        for (var i = 1; i < 10; i++)
        {
            Assert.False(monitor.Broken(Peer, 1000, 5000, Start + i * Poll));
        }

        Assert.False(monitor.Broken(Peer, 1000, 5000 + PathMonitor.KeepaliveBytes, Start + 10 * Poll));
        for (var i = 11; i < 20; i++)
        {
            Assert.False(monitor.Broken(Peer, 1000, 5000 + PathMonitor.KeepaliveBytes, Start + i * Poll));
        }
    }

    [Fact]
    public void A_peer_that_sends_nothing_for_the_quiet_time_is_a_broken_path_even_when_nothing_left_this_side()
    {
        var monitor = new PathMonitor(Silence, Quiet);
        Assert.False(monitor.Broken(Peer, 1000, 5000, Start));
        Assert.False(monitor.Broken(Peer, 1032, 5000, Start + TimeSpan.FromSeconds(25)));
        Assert.False(monitor.Broken(Peer, 1032, 5000, Start + TimeSpan.FromSeconds(79)));
        Assert.True(monitor.Broken(Peer, 1032, 5000, Start + TimeSpan.FromSeconds(80)));
    }

    [Fact]
    public void A_peer_made_afresh_on_the_device_starts_its_count_again()
    {
        var monitor = new PathMonitor(Silence, Quiet);
        Assert.False(monitor.Broken(Peer, 1000, 5000, Start));
        Assert.False(monitor.Broken(Peer, 1000, 9000, Start + Poll));
        // Counters start over (the peer was removed and added): no carried-over silence.
        Assert.False(monitor.Broken(Peer, 0, 148, Start + 4 * Poll));
        Assert.False(monitor.Broken(Peer, 0, 296, Start + 5 * Poll));
        Assert.True(monitor.Broken(Peer, 0, 444, Start + 8 * Poll));

        monitor.Forget(Peer);
        Assert.False(monitor.Broken(Peer, 0, 600, Start + 20 * Poll));
    }
}
