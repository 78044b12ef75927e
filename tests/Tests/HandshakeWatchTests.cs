extern alias agent;
using agent::EphemeralOrleans.Agent.Dataplane;

namespace EphemeralOrleans.Tests;

/// <summary>The rule that breaks crossed first handshakes: which side of a pair starts afresh first, when, and only
/// for a peer the device has with no live session.</summary>
public sealed class HandshakeWatchTests
{
    private static readonly DateTimeOffset Start = new(2026, 12, 6, 12, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan Delay = TimeSpan.FromSeconds(1);
    private static readonly string Low = new('1', 64);
    private static readonly string Mid = new('8', 64);
    private static readonly string High = new('e', 64);

    [Fact]
    public void Of_a_pair_exactly_one_side_goes_first_and_the_other_waits_twice_as_long()
    {
        var mine = new HandshakeWatch(Mid, Delay);
        var theirs = new HandshakeWatch(High, Delay);
        Assert.True(theirs.Leads(Mid));
        Assert.False(mine.Leads(High));

        mine.Watch(High, Start);
        mine.Watch(Low, Start);
        Assert.Equal(Start + Delay, mine.NextDue);
        Assert.Empty(mine.TakeDue(Start + Delay - TimeSpan.FromMilliseconds(1)));
        Assert.Equal([Low], mine.TakeDue(Start + Delay));
        Assert.Equal(Start + 2 * Delay, mine.NextDue);
        Assert.Equal([High], mine.TakeDue(Start + 2 * Delay));
        // Each peer is checked once.
        Assert.Null(mine.NextDue);
        Assert.Empty(mine.TakeDue(Start + 10 * Delay));
    }

    [Fact]
    public void A_peer_forgotten_or_watched_again_is_checked_as_of_its_latest_watch()
    {
        var watch = new HandshakeWatch(Mid, Delay);
        watch.Watch(Low, Start);
        watch.Forget(Low);
        Assert.Null(watch.NextDue);

        watch.Watch(Low, Start);
        watch.Watch(Low, Start + TimeSpan.FromSeconds(5));
        Assert.Empty(watch.TakeDue(Start + Delay));
        Assert.Equal([Low], watch.TakeDue(Start + TimeSpan.FromSeconds(6)));
    }

    [Fact]
    public void Only_a_peer_on_the_device_without_a_recent_handshake_is_stalled()
    {
        Assert.True(HandshakeWatch.Stalled(new PeerStats(Low, "198.18.1.2:41641", null, 148, 240), Start));
        Assert.False(HandshakeWatch.Stalled(new PeerStats(Low, "198.18.1.2:41641", Start - TimeSpan.FromSeconds(3), 92, 148), Start));
        // A session older than WireGuard's rekey age is no proof of a working path.
        Assert.True(HandshakeWatch.Stalled(new PeerStats(Low, "198.18.1.2:41641", Start - TimeSpan.FromMinutes(3), 92, 148), Start));
        // Gone from the device (removed meanwhile): nothing to restart.
        Assert.False(HandshakeWatch.Stalled(null, Start));
    }
}
