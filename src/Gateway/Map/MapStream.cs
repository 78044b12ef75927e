using System.Threading.Channels;
using EphemeralOrleans.Contracts.Model;

namespace EphemeralOrleans.Gateway.Map;

/// <summary>
/// One agent's open netmap stream on this gateway: a bounded queue of messages fed by its tailnet's feed. A stream
/// that falls behind is not allowed to hold anything up: it is marked for a reset and gets a fresh full map.
/// </summary>
internal sealed class MapStream(NodeView self, int epoch, int capacity)
{
    private readonly Channel<MapMessage> _queue = Channel.CreateBounded<MapMessage>(new BoundedChannelOptions(capacity)
    {
        SingleReader = true,
        FullMode = BoundedChannelFullMode.Wait,
    });

    private int _resetPending;
    private long _lastSentAt = Environment.TickCount64;

    public string SelfId { get; } = self.Id;

    /// <summary>The node's latest known view, for full maps built before the feed has it (set under the feed's lock).</summary>
    public NodeView Self { get; set; } = self;

    /// <summary>The node's class under the tailnet's policy (kept by the feed, under its lock).</summary>
    public string Class { get; set; } = "";

    public int Epoch { get; } = epoch;

    /// <summary>Messages waiting to be sent.</summary>
    public int Pending => _queue.Reader.Count;

    /// <summary>Why the stream ended, once it has.</summary>
    public string? ClosedBecause { get; private set; }

    /// <summary>The next message to send, or null once the stream is closed and drained. A stream that overflowed gets,
    /// instead of what was queued, a fresh full map from <paramref name="fullMap"/>.</summary>
    public async Task<MapMessage?> NextAsync(Func<FullMap> fullMap, CancellationToken cancellationToken)
    {
        var reader = _queue.Reader;
        MapMessage? message;
        while (!reader.TryRead(out message))
        {
            if (!await reader.WaitToReadAsync(cancellationToken))
            {
                return null;
            }
        }

        if (Interlocked.Exchange(ref _resetPending, 0) == 1)
        {
            // It fell behind: drop what is queued and start over from the current map.
            while (reader.TryRead(out _))
            {
            }

            message = fullMap();
        }

        Volatile.Write(ref _lastSentAt, Environment.TickCount64);
        return message;
    }

    /// <summary>Queues a keepalive when nothing was sent for <paramref name="silence"/> and nothing waits to be
    /// (checked by the gateway's sweep, so that waiting for the next message costs no timer per wait).</summary>
    public void KeepAliveIfSilent(long nowMilliseconds, TimeSpan silence)
    {
        if (nowMilliseconds - Volatile.Read(ref _lastSentAt) >= (long)silence.TotalMilliseconds && Pending == 0)
        {
            // Once per silence: the next sweep must not queue another before this one is sent.
            Volatile.Write(ref _lastSentAt, nowMilliseconds);
            Enqueue(KeepAlive.Instance);
        }
    }

    public void Enqueue(MapMessage message)
    {
        if (!_queue.Writer.TryWrite(message))
        {
            Interlocked.Exchange(ref _resetPending, 1);
        }
    }

    public void Close(string reason)
    {
        ClosedBecause ??= reason;
        _queue.Writer.TryComplete();
    }

    /// <summary>Whether a change to the node itself ends this stream: logged out, or its token replaced.</summary>
    public bool EndsWith(NodeView self)
    {
        if (self.LoggedOut || self.SessionEpoch != Epoch)
        {
            Close(self.LoggedOut ? "logged out" : "token replaced");
            return true;
        }

        return false;
    }
}
