using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Policy;

namespace EphemeralOrleans.Gateway.Map;

/// <summary>
/// This gateway's copy of one tailnet's registry and policy, kept current by the batches its observer receives, and
/// the streams it feeds. Full maps for new streams come from this copy, so a reconnect storm costs the cluster nothing.
/// <para>
/// Routing: nodes and streams are filed by their class under the policy (<see cref="PolicyVisibility"/>). A changed
/// node is offered to each class of streams once; only the streams of classes that see it (or saw it) get a byte. The
/// cost of a change is the number of stream classes plus the streams it reaches, not the size of the tailnet.
/// </para>
/// </summary>
internal sealed class TailnetFeed(string tailnet, FanoutThreads fanout)
{
    private readonly object _gate = new();
    private readonly Dictionary<string, NodeEntry> _nodes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _classOf = new(StringComparer.Ordinal);
    private readonly Dictionary<string, HashSet<string>> _nodesByClass = new(StringComparer.Ordinal);
    private readonly Dictionary<string, HashSet<MapStream>> _streamsByClass = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<MapStream>> _streamsByNode = new(StringComparer.Ordinal);
    private readonly List<TailnetWatch> _watches = [];
    private PolicyVisibility _policy = PolicyVisibility.AllowAll;
    private string? _policyJson;
    private int _streamCount;

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
                return _streamCount == 0 && _watches.Count == 0;
            }
        }
    }

    /// <summary>Whether the policy pairs two nodes of the tailnet — the test that puts each in the other's netmap. The
    /// relay forwards only between such nodes.</summary>
    public bool Pairs(string fromId, string toId)
    {
        lock (_gate)
        {
            return _classOf.TryGetValue(fromId, out var from) && _classOf.TryGetValue(toId, out var to) && _policy.Visible(from, to);
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

            _policy = Visibility(snapshot.PolicyJson);
            _nodes.Clear();
            foreach (var node in snapshot.Nodes)
            {
                _nodes[node.Id] = node;
            }

            Reclassify();
            var reset = IsInitialized;
            Version = snapshot.Version;
            if (_watches.Count > 0)
            {
                var all = _nodes.Values.ToArray();
                Notify(new TailnetWatchUpdate(all, [], [], NodeCounts.Of(all)));
            }

            if (reset)
            {
                foreach (var stream in AllStreams())
                {
                    stream.Enqueue(FullMapFor(stream));
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

            // Before routing updates the copy: what is news to a watcher is what differs from it.
            (NodeEntry[] Changed, string[] Removed)? watched = _watches.Count == 0 ? null : (
                changes.Changed.Where(n => _nodes.GetValueOrDefault(n.Id) != n).ToArray(),
                changes.Removed.Where(_nodes.ContainsKey).ToArray());

            if (changes.PolicyJson is { } policyJson)
            {
                ApplyWithNewPolicy(changes, Visibility(policyJson));
            }
            else
            {
                Route(changes);
            }

            Version = changes.Version;
            if (watched is { } news && (news.Changed.Length > 0 || news.Removed.Length > 0))
            {
                Notify(new TailnetWatchUpdate(null, news.Changed, news.Removed, NodeCounts.Of(_nodes.Values)));
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
            var all = _nodes.Values.ToArray();
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

    /// <summary>Adds a stream and queues its full map in the same step, so no batch falls between the two.</summary>
    public void Attach(MapStream stream)
    {
        lock (_gate)
        {
            File(stream, _policy.ClassOf((_nodes.GetValueOrDefault(stream.SelfId) ?? stream.Self).Record));
            if (!_streamsByNode.TryGetValue(stream.SelfId, out var own))
            {
                _streamsByNode[stream.SelfId] = own = [];
            }

            own.Add(stream);
            _streamCount++;
            stream.Enqueue(FullMapFor(stream));
        }
    }

    public void Detach(MapStream stream)
    {
        lock (_gate)
        {
            if (_streamsByClass.TryGetValue(stream.Class, out var peers) && peers.Remove(stream))
            {
                _streamCount--;
                if (peers.Count == 0)
                {
                    _streamsByClass.Remove(stream.Class);
                }
            }

            if (_streamsByNode.TryGetValue(stream.SelfId, out var own) && own.Remove(stream) && own.Count == 0)
            {
                _streamsByNode.Remove(stream.SelfId);
            }
        }
    }

    /// <summary>Queues a keepalive on each stream silent for <paramref name="silence"/>.</summary>
    public void KeepAliveIfSilent(long nowMilliseconds, TimeSpan silence)
    {
        using var wakes = StreamWakes.Defer(fanout);
        lock (_gate)
        {
            foreach (var stream in AllStreams())
            {
                stream.KeepAliveIfSilent(nowMilliseconds, silence);
            }
        }
    }

    public FullMap FullMap(MapStream stream)
    {
        lock (_gate)
        {
            return FullMapFor(stream);
        }
    }

    /// <summary>The common case: node changes under an unchanged policy, routed by class. Streams of one class see the
    /// same changes, so they share one delta message (and its encodings); a stream gets its own only when the batch
    /// touches its node.</summary>
    private void Route(TailnetChanges changes)
    {
        var byClass = new Dictionary<string, DeltaBuilder>(StringComparer.Ordinal);
        DeltaBuilder For(string streamClass) =>
            byClass.TryGetValue(streamClass, out var builder) ? builder : byClass[streamClass] = new DeltaBuilder();
        var touched = new HashSet<string>(StringComparer.Ordinal);
        var selves = new Dictionary<MapStream, NodeEntry>();
        var resets = new HashSet<MapStream>();

        foreach (var node in changes.Changed)
        {
            touched.Add(node.Id);
            var previous = _nodes.GetValueOrDefault(node.Id);
            var oldClass = previous is null ? null : _classOf[node.Id];
            var newClass = _policy.ClassOf(node.Record);
            var presenceOnly = previous is not null && previous.Record == node.Record;
            if (presenceOnly && previous!.Presence == node.Presence)
            {
                // Already known as it is (a snapshot taken while this batch was in its window included it): no news.
                continue;
            }

            Index(node, newClass);

            foreach (var own in OwnStreams(node.Id))
            {
                if (own.EndsWith(node))
                {
                    continue;
                }

                var known = own.Self;
                own.Self = node;
                if (own.Class != newClass)
                {
                    // Approved (or otherwise re-classed): its peers change wholesale, so it starts over.
                    Refile(own, newClass);
                    resets.Add(own);
                }
                else if ((previous ?? known).Record != node.Record)
                {
                    // Its own presence is news to no agent (it is the one connected): only other changes go out.
                    selves[own] = node;
                }
            }

            foreach (var streamClass in _streamsByClass.Keys)
            {
                var seesNow = _policy.Visible(streamClass, newClass);
                var sawBefore = oldClass is not null && _policy.Visible(streamClass, oldClass);
                if (!seesNow)
                {
                    if (sawBefore)
                    {
                        For(streamClass).Removed.Add(node.Id);
                    }
                }
                else if (sawBefore && presenceOnly)
                {
                    For(streamClass).Patches.Add(new PeerPatch(node.Id, node.Presence.Online, node.Presence.LastSeen));
                }
                else
                {
                    For(streamClass).Changed.Add(node);
                }
            }
        }

        foreach (var id in changes.Removed)
        {
            touched.Add(id);
            foreach (var own in OwnStreams(id))
            {
                own.Close("node removed");
            }

            if (Unindex(id) is not { } oldClass)
            {
                continue;
            }

            foreach (var streamClass in _streamsByClass.Keys)
            {
                if (_policy.Visible(streamClass, oldClass))
                {
                    For(streamClass).Removed.Add(id);
                }
            }
        }

        foreach (var stream in resets)
        {
            stream.Enqueue(FullMapFor(stream));
        }

        foreach (var (streamClass, builder) in byClass)
        {
            var shared = builder.Build(changes, filter: null, self: null);
            foreach (var stream in _streamsByClass[streamClass])
            {
                if (resets.Contains(stream) || stream.ClosedBecause is not null || selves.ContainsKey(stream))
                {
                    continue;
                }

                if (!touched.Contains(stream.SelfId))
                {
                    stream.Enqueue(shared);
                }
                else if (builder.Without(stream.SelfId) is { IsEmpty: false } own)
                {
                    // A stream's own node is never its peer.
                    stream.Enqueue(own.Build(changes, null, null));
                }
            }
        }

        foreach (var (stream, self) in selves)
        {
            if (!resets.Contains(stream) && stream.ClosedBecause is null)
            {
                var builder = byClass.TryGetValue(stream.Class, out var b) ? b.Without(stream.SelfId) : new DeltaBuilder();
                stream.Enqueue(builder.Build(changes, null, self));
            }
        }
    }

    /// <summary>A policy change (rare): every stream's peers are compared before and after; each gets what it gained
    /// and lost, and its new packet filter. Costs streams × nodes, once per policy change.</summary>
    private void ApplyWithNewPolicy(TailnetChanges changes, PolicyVisibility policy)
    {
        var streams = AllStreams().ToArray();
        var before = streams.ToDictionary(s => s, PeerIds);
        var filtersBefore = streams.ToDictionary(s => s, s => _policy.FilterFor(s.Class));
        var selvesBefore = streams.ToDictionary(s => s, s => _nodes.GetValueOrDefault(s.SelfId) ?? s.Self);

        foreach (var node in changes.Changed)
        {
            _nodes[node.Id] = node;
            foreach (var own in OwnStreams(node.Id))
            {
                if (!own.EndsWith(node))
                {
                    own.Self = node;
                }
            }
        }

        foreach (var id in changes.Removed)
        {
            _nodes.Remove(id);
            foreach (var own in OwnStreams(id))
            {
                own.Close("node removed");
            }
        }

        _policy = policy;
        Reclassify();
        var changedIds = changes.Changed.Select(n => n.Id).ToHashSet(StringComparer.Ordinal);
        foreach (var stream in streams)
        {
            if (stream.ClosedBecause is not null)
            {
                continue;
            }

            var after = PeerIds(stream);
            var selfChanged = changedIds.Contains(stream.SelfId) && selvesBefore[stream].Record != stream.Self.Record;
            var delta = new DeltaBuilder();
            delta.Changed.AddRange(after.Where(id => !before[stream].Contains(id) || changedIds.Contains(id)).Select(id => _nodes[id]));
            delta.Removed.AddRange(before[stream].Where(id => !after.Contains(id)));
            var filter = _policy.FilterFor(stream.Class);
            var filterChanged = !SameFilter(filter, filtersBefore[stream]);
            if (filterChanged || delta.Changed.Count > 0 || delta.Removed.Count > 0 || selfChanged)
            {
                stream.Enqueue(delta.Build(changes, filterChanged ? filter : null, selfChanged ? stream.Self : null));
            }
        }
    }

    private FullMap FullMapFor(MapStream stream)
    {
        // The copy may not have the node yet (its batch is still in its window): the stream's own entry stands in.
        var self = _nodes.GetValueOrDefault(stream.SelfId) ?? stream.Self;
        var peers = PeerIds(stream).Select(id => _nodes[id]).ToArray();
        return new FullMap(Version, self, peers, _policy.FilterFor(stream.Class));
    }

    /// <summary>The peers of a stream's node: every node of every class its class sees, but itself.</summary>
    private HashSet<string> PeerIds(MapStream stream)
    {
        var peers = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (nodeClass, ids) in _nodesByClass)
        {
            if (_policy.Visible(stream.Class, nodeClass))
            {
                peers.UnionWith(ids);
            }
        }

        peers.Remove(stream.SelfId);
        return peers;
    }

    private void Reclassify()
    {
        _classOf.Clear();
        _nodesByClass.Clear();
        foreach (var node in _nodes.Values)
        {
            Index(node, _policy.ClassOf(node.Record));
        }

        foreach (var stream in AllStreams().ToArray())
        {
            Refile(stream, _policy.ClassOf((_nodes.GetValueOrDefault(stream.SelfId) ?? stream.Self).Record));
        }
    }

    private void Index(NodeEntry node, string nodeClass)
    {
        if (_classOf.TryGetValue(node.Id, out var previous) && previous != nodeClass && _nodesByClass.TryGetValue(previous, out var old))
        {
            old.Remove(node.Id);
            if (old.Count == 0)
            {
                _nodesByClass.Remove(previous);
            }
        }

        _nodes[node.Id] = node;
        _classOf[node.Id] = nodeClass;
        if (!_nodesByClass.TryGetValue(nodeClass, out var members))
        {
            _nodesByClass[nodeClass] = members = new HashSet<string>(StringComparer.Ordinal);
        }

        members.Add(node.Id);
    }

    /// <summary>Forgets a node; returns the class it had, or null if it was not known.</summary>
    private string? Unindex(string id)
    {
        _nodes.Remove(id);
        if (!_classOf.Remove(id, out var nodeClass))
        {
            return null;
        }

        if (_nodesByClass.TryGetValue(nodeClass, out var members) && members.Remove(id) && members.Count == 0)
        {
            _nodesByClass.Remove(nodeClass);
        }

        return nodeClass;
    }

    private void File(MapStream stream, string streamClass)
    {
        stream.Class = streamClass;
        if (!_streamsByClass.TryGetValue(streamClass, out var streams))
        {
            _streamsByClass[streamClass] = streams = [];
        }

        streams.Add(stream);
    }

    private void Refile(MapStream stream, string streamClass)
    {
        if (stream.Class == streamClass)
        {
            return;
        }

        if (_streamsByClass.TryGetValue(stream.Class, out var streams) && streams.Remove(stream) && streams.Count == 0)
        {
            _streamsByClass.Remove(stream.Class);
        }

        File(stream, streamClass);
    }

    private void Notify(TailnetWatchUpdate update)
    {
        foreach (var watch in _watches)
        {
            watch.Push(update);
        }
    }

    private IEnumerable<MapStream> AllStreams() => _streamsByClass.Values.SelectMany(s => s);

    private IEnumerable<MapStream> OwnStreams(string nodeId) =>
        _streamsByNode.TryGetValue(nodeId, out var own) ? own.ToArray() : [];

    /// <summary>The visibility of a policy; the current one when the policy is the same (a resync or a renewal
    /// brings the unchanged policy along: no new parse, and the class cache stays warm).</summary>
    private PolicyVisibility Visibility(string? policyJson)
    {
        if (policyJson == _policyJson)
        {
            return _policy;
        }

        _policyJson = policyJson;
        return policyJson is null ? PolicyVisibility.AllowAll : new PolicyVisibility(PolicyDocument.ParseStored(policyJson));
    }

    private static bool SameFilter(PacketFilterRule[] a, PacketFilterRule[] b) =>
        a.Length == b.Length && a.Zip(b).All(p => p.First.Ports == p.Second.Ports && p.First.Sources.SequenceEqual(p.Second.Sources));

    /// <summary>What a batch brings to a class of streams (or to one stream).</summary>
    private sealed class DeltaBuilder
    {
        public List<NodeEntry> Changed { get; private init; } = [];
        public List<string> Removed { get; private init; } = [];
        public List<PeerPatch> Patches { get; private init; } = [];

        public bool IsEmpty => Changed.Count == 0 && Removed.Count == 0 && Patches.Count == 0;

        /// <summary>The same, less anything about <paramref name="id"/>.</summary>
        public DeltaBuilder Without(string id) => new()
        {
            Changed = Changed.Where(n => n.Id != id).ToList(),
            Removed = Removed.Where(r => r != id).ToList(),
            Patches = Patches.Where(p => p.Id != id).ToList(),
        };

        public MapDelta Build(TailnetChanges changes, PacketFilterRule[]? filter, NodeEntry? self) =>
            new(changes.Version, Changed.ToArray(), Removed.ToArray(), self)
            {
                PeersChangedPatch = Patches.Count > 0 ? Patches.ToArray() : null,
                PacketFilter = filter,
                ChangedAt = changes.FirstChangeAt,
            };
    }
}
