using EphemeralOrleans.Contracts.Model;

namespace EphemeralOrleans.Gateway.Map;

/// <summary>
/// One agent's open netmap stream on this gateway. What the feed gives it waits in one slot: deltas that arrive while
/// the agent is still reading an earlier message are merged into the one waiting, so a slow agent gets fewer, larger
/// deltas and never a backlog, and never holds anything up. A waiting delta that grows past its bound (a stuck agent
/// under churn) is dropped for a fresh full map, built when the agent is ready for it.
/// </summary>
internal sealed class MapStream(NodeView self, int epoch, int maxPendingEntries)
{
    private readonly object _lock = new();
    private readonly SemaphoreSlim _signal = new(0, 1);
    private MapMessage? _full;
    private MapDelta? _pending;
    private bool _reset;
    private bool _closed;

    public string SelfId { get; } = self.Id;

    /// <summary>The node's latest known view, for full maps built before the feed has it (set under the feed's lock).</summary>
    public NodeView Self { get; set; } = self;

    /// <summary>The node's class under the tailnet's policy (kept by the feed, under its lock).</summary>
    public string Class { get; set; } = "";

    public int Epoch { get; } = epoch;

    /// <summary>Why the stream ended, once it has.</summary>
    public string? ClosedBecause { get; private set; }

    public void Enqueue(MapMessage message)
    {
        lock (_lock)
        {
            if (_closed)
            {
                return;
            }

            switch (message)
            {
                case FullMap:
                    _full = message;
                    _pending = null;
                    _reset = false;
                    break;
                case MapDelta when _reset:
                    // A full map will be built when the agent reads: it will include this.
                    break;
                case MapDelta delta when _pending is null:
                    _pending = delta;
                    break;
                case MapDelta delta:
                    // The agent has not taken the last one yet: it falls behind.
                    _pending = Merge(_pending, delta);
                    if (Entries(_pending) > maxPendingEntries)
                    {
                        _pending = null;
                        _full = null;
                        _reset = true;
                    }

                    break;
            }
        }

        Signal();
    }

    /// <summary>The next message to send: a full map, the waiting delta, a keepalive after <paramref name="silence"/>,
    /// or null once the stream is closed. <paramref name="fullMap"/> builds a fresh full map after a reset.</summary>
    public async Task<MapMessage?> NextAsync(TimeSpan silence, Func<FullMap> fullMap, CancellationToken cancellationToken)
    {
        while (true)
        {
            var reset = false;
            lock (_lock)
            {
                if (_closed)
                {
                    return null;
                }

                if (_reset)
                {
                    _reset = false;
                    reset = true;
                }
                else if (_full is { } full)
                {
                    _full = null;
                    return full;
                }
                else if (_pending is { } pending)
                {
                    _pending = null;
                    return pending;
                }
            }

            if (reset)
            {
                // Outside the stream's lock: the feed takes its own lock first, then (in Enqueue) this one.
                return fullMap();
            }

            if (!await _signal.WaitAsync(silence, cancellationToken))
            {
                return KeepAlive.Instance;
            }
        }
    }

    public void Close(string reason)
    {
        lock (_lock)
        {
            ClosedBecause ??= reason;
            _closed = true;
        }

        Signal();
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

    private void Signal()
    {
        try
        {
            _signal.Release();
        }
        catch (SemaphoreFullException)
        {
            // Already signalled: the writer will find everything that is waiting.
        }
    }

    private static int Entries(MapDelta delta) => delta.PeersChanged.Length + delta.PeersRemoved.Length + (delta.PeersChangedPatch?.Length ?? 0);

    /// <summary><paramref name="later"/> applied on top of <paramref name="earlier"/>: one delta with the same effect.</summary>
    internal static MapDelta Merge(MapDelta earlier, MapDelta later)
    {
        var changed = earlier.PeersChanged.ToDictionary(n => n.Id, StringComparer.Ordinal);
        var removed = new HashSet<string>(earlier.PeersRemoved, StringComparer.Ordinal);
        var patches = (earlier.PeersChangedPatch ?? []).ToDictionary(p => p.Id, StringComparer.Ordinal);
        foreach (var id in later.PeersRemoved)
        {
            changed.Remove(id);
            patches.Remove(id);
            removed.Add(id);
        }

        foreach (var node in later.PeersChanged)
        {
            removed.Remove(node.Id);
            patches.Remove(node.Id);
            changed[node.Id] = node;
        }

        foreach (var patch in later.PeersChangedPatch ?? [])
        {
            if (changed.TryGetValue(patch.Id, out var node))
            {
                changed[patch.Id] = node with { Online = patch.Online, LastSeen = patch.LastSeen };
            }
            else
            {
                patches[patch.Id] = patch;
            }
        }

        return new MapDelta(later.Version, changed.Values.ToArray(), removed.ToArray(), later.Self ?? earlier.Self)
        {
            PeersChangedPatch = patches.Count > 0 ? patches.Values.ToArray() : null,
            PacketFilter = later.PacketFilter ?? earlier.PacketFilter,
            ChangedAt = earlier.ChangedAt,
        };
    }
}
