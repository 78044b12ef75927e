using System.Net;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Gateway.Map;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>A slow or stuck agent's stream is bounded: past its buffer it is reset with a fresh full map instead of
/// holding anything up; an agent that keeps up gets every message in order.</summary>
public sealed class MapStreamQueueTests
{
    private static NodeEntry Node(string id) =>
        new(new NodeRecord(id, id, id, "nodekey:" + new string('0', 64), IPAddress.Parse("100.64.0.1"), IPAddress.Parse("fd7a:115c:a1e0::1"), true,
            ValueList<string>.Empty, DateTimeOffset.UnixEpoch, true, false, "key", "default", 0), new NodePresence(false, null));

    private static DeltaMessage Delta(long version) => new(version, [Node($"n{version}")], []);

    [Fact]
    public async Task A_stream_past_its_buffer_gets_a_fresh_full_map_and_nothing_stale()
    {
        var stream = new MapStream(capacity: 4);
        for (var version = 1; version <= 20; version++)
        {
            stream.Enqueue(Delta(version)); // never blocks the feed, however far behind the agent is
        }

        var fresh = new FullMapMessage(20, Node("self"), [Node("n20")], []);
        Assert.Same(fresh, await stream.NextAsync(() => fresh, CancellationToken.None));
        Assert.Equal(0, stream.Pending);
    }

    [Fact]
    public async Task A_silent_stream_gets_one_keepalive_per_silence_and_a_busy_one_none()
    {
        var silence = TimeSpan.FromSeconds(30);
        var stream = new MapStream(capacity: 4);
        var start = Environment.TickCount64;
        stream.KeepAliveIfSilent(start, silence);
        Assert.Equal(0, stream.Pending); // not silent yet

        stream.KeepAliveIfSilent(start + 31_000, silence);
        stream.KeepAliveIfSilent(start + 32_000, silence); // the sweep again before the agent took it: still one
        Assert.Equal(1, stream.Pending);
        Assert.IsType<KeepAliveMessage>(await stream.NextAsync(() => throw new InvalidOperationException(), CancellationToken.None));

        stream.Enqueue(Delta(1)); // something waits to be sent: no keepalive on top of it
        stream.KeepAliveIfSilent(Environment.TickCount64 + 60_000, silence);
        Assert.Equal(1, stream.Pending);
    }

    [Fact]
    public async Task An_agent_that_keeps_up_gets_each_message_in_order_and_a_closed_stream_ends()
    {
        var stream = new MapStream(capacity: 2);
        for (var version = 1; version <= 10; version++)
        {
            stream.Enqueue(Delta(version));
            var message = await stream.NextAsync(() => throw new InvalidOperationException("no reset expected"), CancellationToken.None);
            Assert.Equal(version, Assert.IsType<DeltaMessage>(message).Version);
        }

        stream.Close("node removed");
        Assert.Null(await stream.NextAsync(() => throw new InvalidOperationException(), CancellationToken.None));
        Assert.Equal("node removed", stream.ClosedBecause);
    }

    [Fact]
    public async Task A_batch_resumes_waiting_writers_after_it_is_routed_on_the_fan_out_threads_even_late_and_cancellation_still_ends_a_wait()
    {
        using var fanout = new FanoutThreads(2);
        var streams = Enumerable.Range(0, 600).Select(i => new MapStream(capacity: 4)).ToArray();
        var writers = streams.Select(s => Task.Run(async () =>
        {
            var message = await s.NextAsync(() => throw new InvalidOperationException(), CancellationToken.None);
            return (Message: message, Thread: Thread.CurrentThread.Name);
        })).ToArray();
        await Poll.UntilAsync(() => Task.FromResult(streams.All(s => s.IsWaiting)), TimeSpan.FromSeconds(10), "every writer waiting");

        using (StreamWakes.Defer(fanout))
        {
            foreach (var stream in streams)
            {
                stream.Enqueue(Delta(1));
            }

            // Routing a batch happens under the feed's lock: no writer may run before it is done.
            await Task.Delay(100);
            Assert.All(writers, w => Assert.False(w.IsCompleted));
        }

        var written = await Task.WhenAll(writers).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.All(written, w => Assert.Equal(1, Assert.IsType<DeltaMessage>(w.Message).Version));
        Assert.All(written, w => Assert.StartsWith("map fan-out", w.Thread));

        // A gateway shutting down stops its fan-out threads; a late batch still reaches its writers.
        var late = streams[1].NextAsync(() => throw new InvalidOperationException(), CancellationToken.None).AsTask();
        fanout.Dispose();
        using (StreamWakes.Defer(fanout))
        {
            streams[1].Enqueue(Delta(2));
        }

        Assert.Equal(2, Assert.IsType<DeltaMessage>(await late.WaitAsync(TimeSpan.FromSeconds(10))).Version);

        using var disconnected = new CancellationTokenSource();
        var waiting = streams[0].NextAsync(() => throw new InvalidOperationException(), disconnected.Token).AsTask();
        await disconnected.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task A_writer_whose_agent_left_while_it_was_writing_ends_at_its_next_wait_instead_of_hanging()
    {
        var stream = new MapStream(capacity: 4);
        using var agent = new CancellationTokenSource();
        var first = stream.NextAsync(() => throw new InvalidOperationException(), agent.Token).AsTask();
        await Poll.UntilAsync(() => Task.FromResult(stream.IsWaiting), TimeSpan.FromSeconds(10), "the writer waiting");
        stream.Enqueue(Delta(1));
        Assert.Equal(1, Assert.IsType<DeltaMessage>(await first.WaitAsync(TimeSpan.FromSeconds(10))).Version);

        // The agent goes while its writer is busy sending: no wait is there to end yet.
        await agent.CancelAsync();
        var next = stream.NextAsync(() => throw new InvalidOperationException(), agent.Token).AsTask();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => next.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.False(stream.IsWaiting);
    }
}
