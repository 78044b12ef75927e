using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Policy;

namespace EphemeralOrleans.Gateway.Map;

/// <summary>
/// This gateway's copy of one tailnet's registry and policy (<see cref="ClassIndex"/>), kept current by the batches its
/// observer receives, and the streams and watchers it feeds. Full maps for new streams come from this copy, so a
/// reconnect storm costs the cluster nothing. What a batch means for each stream is the <see cref="DeltaPlanner"/>'s;
/// the feed holds the lock, applies the plan, and hands the streams' wakes to the fan-out threads.
/// </summary>
internal sealed class TailnetFeed(string tailnet, FanoutThreads fanout)
{
    private readonly object _gate = new();
    private readonly ClassIndex _index = new();
    private readonly MapSubscribers _subscribers = new();
    private readonly List<TailnetWatch> _watches = [];

    public string Tailnet { get; } = tailnet;

    public SemaphoreSlim InitLock { get; } = new(1, 1);

    /// <summary>-1 until the first snapshot.</summary>
    public long Version { get; private set; } = -1;

    public bool IsInitialized => Version >= 0;

    /// <summary>No stream and no watcher: the hub may drop the feed.</summary>
    public bool IsIdle
    {
        get
        {
            lock (_gate)
            {
                return _subscribers.Count == 0 && _watches.Count == 0;
            }
        }
    }

    /// <summary>Whether the policy pairs two nodes of the tailnet — the test that puts each in the other's netmap. The
    /// relay forwards only between such nodes.</summary>
    public bool Pairs(string fromId, string toId)
    {
        lock (_gate)
        {
            return _index.Pairs(fromId, toId);
        }
    }

    /// <summary>Replaces the copy with a snapshot and resets every stream with a full map.</summary>
    public void Load(TailnetSnapshot snapshot)
    {
        using var wakes = StreamWakes.Defer(fanout);
        lock (_gate)
        {
            if (snapshot.Version < Version)
            {
                return;
            }

            _index.Load(snapshot.Nodes, snapshot.PolicyJson);
            foreach (var subscriber in _subscribers.All.ToArray())
            {
                _subscribers.Move(subscriber, subscriber.Self, ClassOf(subscriber.Self));
            }

            var reset = IsInitialized;
            Version = snapshot.Version;
            if (_watches.Count > 0)
            {
                var all = _index.Nodes.ToArray();
                Notify(new TailnetWatchUpdate(all, [], [], NodeCounts.Of(all)));
            }

            if (reset)
            {
                foreach (var subscriber in _subscribers.All)
                {
                    subscriber.Stream.Enqueue(FullMapFor(subscriber));
                }
            }
        }
    }

    /// <summary>Applies a batch; false when it does not follow the current version (a gap), which calls for a resync.</summary>
    public bool Apply(TailnetChanges changes)
    {
        // The streams' writers run after the lock is released, on the fan-out threads.
        using var wakes = StreamWakes.Defer(fanout);
        lock (_gate)
        {
            if (!IsInitialized || changes.Version <= Version)
            {
                return true;
            }

            if (changes.PreviousVersion != Version)
            {
                return false;
            }

            // Before planning advances the copy: what is news to a watcher is what differs from it.
            (NodeEntry[] Changed, string[] Removed)? watched = _watches.Count == 0 ? null : (
                changes.Changed.Where(n => _index.Get(n.Id) != n).ToArray(),
                changes.Removed.Where(id => _index.Get(id) is not null).ToArray());

            var plan = DeltaPlanner.Plan(_index, _subscribers, changes);
            foreach (var (subscriber, reason) in plan.Closes)
            {
                subscriber.Stream.Close(reason);
            }

            foreach (var (subscriberClass, delta) in plan.Shared)
            {
                foreach (var subscriber in _subscribers.InClass(subscriberClass))
                {
                    if (!plan.Own.ContainsKey(subscriber))
                    {
                        subscriber.Stream.Enqueue(delta);
                    }
                }
            }

            foreach (var (subscriber, message) in plan.Own)
            {
                if (message is not null)
                {
                    subscriber.Stream.Enqueue(message);
                }
            }

            foreach (var (subscriber, (self, subscriberClass)) in plan.Placements)
            {
                _subscribers.Move(subscriber, self, subscriberClass);
            }

            Version = changes.Version;
            if (watched is { } news && (news.Changed.Length > 0 || news.Removed.Length > 0))
            {
                Notify(new TailnetWatchUpdate(null, news.Changed, news.Removed, NodeCounts.Of(_index.Nodes)));
            }

            return true;
        }
    }

    /// <summary>Adds a watcher and queues every node for it in the same step, so no batch falls between the two.</summary>
    public void Watch(TailnetWatch watch)
    {
        lock (_gate)
        {
            _watches.Add(watch);
            var all = _index.Nodes.ToArray();
            watch.Push(new TailnetWatchUpdate(all, [], [], NodeCounts.Of(all)));
        }
    }

    public void Unwatch(TailnetWatch watch)
    {
        lock (_gate)
        {
            _watches.Remove(watch);
        }
    }

    /// <summary>Adds a stream for <paramref name="self"/>'s session <paramref name="epoch"/> and queues its full map in
    /// the same step, so no batch falls between the two.</summary>
    public MapSubscriber Attach(MapStream stream, NodeEntry self, int epoch)
    {
        lock (_gate)
        {
            var subscriber = new MapSubscriber(stream, self, epoch);
            _subscribers.Add(subscriber, ClassOf(self));
            stream.Enqueue(FullMapFor(subscriber));
            return subscriber;
        }
    }

    public void Detach(MapSubscriber subscriber)
    {
        lock (_gate)
        {
            _subscribers.Remove(subscriber);
        }
    }

    /// <summary>Queues a keepalive on each stream silent for <paramref name="silence"/>.</summary>
    public void KeepAliveIfSilent(long nowMilliseconds, TimeSpan silence)
    {
        using var wakes = StreamWakes.Defer(fanout);
        lock (_gate)
        {
            foreach (var subscriber in _subscribers.All)
            {
                subscriber.Stream.KeepAliveIfSilent(nowMilliseconds, silence);
            }
        }
    }

    public FullMapMessage FullMap(MapSubscriber subscriber)
    {
        lock (_gate)
        {
            return FullMapFor(subscriber);
        }
    }

    private FullMapMessage FullMapFor(MapSubscriber subscriber) => _index.FullMap(Version, subscriber.Self, subscriber.Class);

    /// <summary>A subscriber's class: its node's as the copy has it, or as the stream was opened (not in the copy yet).</summary>
    private string ClassOf(NodeEntry self) => _index.Policy.ClassOf((_index.Get(self.Id) ?? self).Record);

    private void Notify(TailnetWatchUpdate update)
    {
        foreach (var watch in _watches)
        {
            watch.Push(update);
        }
    }
}
