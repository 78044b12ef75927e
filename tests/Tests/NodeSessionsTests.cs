using EphemeralOrleans.Grains.Sessions;

namespace EphemeralOrleans.Tests;

/// <summary>A node's sessions as its grain keeps them: what a gateway's lease says decides which stand, a lease that
/// cannot tell changes nothing until the answer is final, and a lapsed lease ends its sessions as of the last one opened.</summary>
public sealed class NodeSessionsTests
{
    private static readonly DateTimeOffset T0 = new(2026, 12, 7, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void A_lease_answer_keeps_what_it_holds_ends_the_rest_and_brings_back_what_the_node_had_lost()
    {
        var sessions = new NodeSessions();
        sessions.Open("gw-a", ["s1", "s2"], T0);
        sessions.Open("gw-b", ["s3"], T0);

        sessions.Reconcile("gw-a", ["s2", "s4"], final: false, T0.AddSeconds(5));

        Assert.False(sessions.Contains("s1")); // the lease no longer holds it: over
        Assert.True(sessions.Contains("s2"));
        Assert.True(sessions.Contains("s4")); // held for the node while it restarted: back
        Assert.True(sessions.Contains("s3")); // another lease's: untouched
        Assert.Equal(["gw-a", "gw-b"], sessions.Hosts([], keepRecorded: false));
    }

    [Fact]
    public void A_lease_that_cannot_tell_changes_nothing_until_the_answer_is_final()
    {
        var sessions = new NodeSessions();
        sessions.Open("gw-a", ["s1"], T0);

        sessions.Reconcile("gw-a", held: null, final: false, T0);
        Assert.True(sessions.Contains("s1"));

        sessions.Reconcile("gw-a", held: null, final: true, T0);
        Assert.Equal(0, sessions.Count);
        Assert.False(sessions.Online);
    }

    [Fact]
    public void Recorded_leases_are_asked_and_kept_only_while_sessions_are_unconfirmed()
    {
        var sessions = new NodeSessions { UnconfirmedUntil = T0.AddSeconds(30) };
        Assert.True(sessions.Online); // after a restart it counts as online until the leases have answered
        Assert.Equal(["gw-old"], sessions.LeasesToAsk(["gw-old"]));
        sessions.Open("gw-new", ["s1"], T0);

        Assert.Equal(["gw-new", "gw-old"], sessions.Hosts(["gw-old"], keepRecorded: true));
        Assert.Equal(["gw-new"], sessions.Hosts(["gw-old"], keepRecorded: false));
    }

    [Fact]
    public void A_lapsed_lease_ends_its_sessions_and_tells_when_the_last_of_them_opened()
    {
        var sessions = new NodeSessions();
        sessions.Open("gw-a", ["s1"], T0);
        sessions.Open("gw-a", ["s2"], T0.AddSeconds(10));
        sessions.Open("gw-b", ["s3"], T0.AddSeconds(20));

        Assert.Equal(T0.AddSeconds(10), sessions.CloseHeldBy("gw-a"));
        Assert.Null(sessions.CloseHeldBy("gw-a"));
        Assert.Equal(1, sessions.Count);
        Assert.True(sessions.Contains("s3"));
    }
}
