using EphemeralOrleans.Contracts.Model;

namespace EphemeralOrleans.Gateway.Map;

/// <summary>
/// This gateway's copy of one tailnet's registry, kept current by the batches its observer receives, and the
/// streams it feeds. Full maps for new streams come from this copy, so a reconnect storm costs the cluster nothing.
/// </summary>
internal sealed class TailnetFeed(string tailnet)
{
    private readonly object _gate = new();
    private readonly HashSet<MapStream> _streams = [];
    private readonly Dictionary<string, NodeView> _nodes = new(StringComparer.Ordinal);

    public string Tailnet { get; } = tailnet;

    public SemaphoreSlim InitLock { get; } = new(1, 1);

    /// <summary>-1 until the first snapshot.</summary>
    public long Version { get; private set; } = -1;

    public bool IsInitialized => Version >= 0;

    public int StreamCount
    {
        get
        {
            lock (_gate)
            {
                return _streams.Count;
            }
        }
    }

    /// <summary>Replaces the copy with a snapshot and resets every stream with a full map.</summary>
    public void Load(TailnetSnapshot snapshot)
    {
        lock (_gate)
        {
            if (snapshot.Version < Version)
            {
                return;
            }

            _nodes.Clear();
            foreach (var node in snapshot.Nodes)
            {
                _nodes[node.Id] = node;
            }

            var reset = IsInitialized;
            Version = snapshot.Version;
            if (reset)
            {
                foreach (var stream in _streams)
                {
                    stream.Enqueue(FullMapFor(stream));
                }
            }
        }
    }

    /// <summary>Applies a batch; false when it does not follow the current version (a gap), which calls for a resync.</summary>
    public bool Apply(TailnetChanges changes)
    {
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

            foreach (var node in changes.Changed)
            {
                _nodes[node.Id] = node;
            }

            foreach (var id in changes.Removed)
            {
                _nodes.Remove(id);
            }

            Version = changes.Version;
            foreach (var stream in _streams)
            {
                stream.OnChanges(changes);
            }

            return true;
        }
    }

    /// <summary>Adds a stream and queues its full map in the same step, so no batch falls between the two.</summary>
    public void Attach(MapStream stream)
    {
        lock (_gate)
        {
            _streams.Add(stream);
            stream.Enqueue(FullMapFor(stream));
        }
    }

    public void Detach(MapStream stream)
    {
        lock (_gate)
        {
            _streams.Remove(stream);
        }
    }

    public FullMap FullMap(MapStream stream)
    {
        lock (_gate)
        {
            return FullMapFor(stream);
        }
    }

    private FullMap FullMapFor(MapStream stream)
    {
        // The copy may not have the node yet (its batch is still in its window): the stream's own view stands in.
        var self = _nodes.GetValueOrDefault(stream.SelfId) ?? stream.Self;
        var peers = _nodes.Values.Where(n => n.Id != stream.SelfId).ToArray();
        return new FullMap(Version, self, peers);
    }
}
