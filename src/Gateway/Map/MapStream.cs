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

    public string SelfId { get; } = self.Id;

    /// <summary>The node's latest known view, for full maps built before the feed has it.</summary>
    public NodeView Self { get; private set; } = self;

    public int Epoch { get; } = epoch;

    /// <summary>Why the stream ended, once it has.</summary>
    public string? ClosedBecause { get; private set; }

    public ChannelReader<MapMessage> Reader => _queue.Reader;

    /// <summary>Consumes the reset mark, if set.</summary>
    public bool TakeReset() => Interlocked.Exchange(ref _resetPending, 0) == 1;

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

    /// <summary>Turns a tailnet batch into this stream's delta (called under the feed's lock, in batch order).</summary>
    public void OnChanges(TailnetChanges changes)
    {
        if (Array.IndexOf(changes.Removed, SelfId) >= 0)
        {
            Close("node removed");
            return;
        }

        var self = Array.Find(changes.Changed, n => n.Id == SelfId);
        if (self is not null && (self.LoggedOut || self.SessionEpoch != Epoch))
        {
            Close(self.LoggedOut ? "logged out" : "token replaced");
            return;
        }

        if (self is not null)
        {
            Self = self;
        }

        var changed = changes.Changed.Where(n => n.Id != SelfId).ToArray();
        var removed = changes.Removed.Where(id => id != SelfId).ToArray();
        if (changed.Length > 0 || removed.Length > 0 || self is not null)
        {
            Enqueue(new MapDelta(changes.Version, changed, removed, self) { ChangedAt = changes.FirstChangeAt });
        }
    }
}
