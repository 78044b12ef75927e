using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Policy;

namespace EphemeralOrleans.Gateway.Map;

/// <summary>
/// What one batch of registry changes means for a feed's subscribers: which message each gets, which streams end, and
/// where each subscriber is filed after it. Planning touches no stream; its only effect is to bring the index it is
/// given to the batch's state (its feed applies the plan under the same lock).
/// <para>
/// The rule it keeps (tested against recomputing every map, <c>DeltaPlannerTests</c>): a subscriber's map before the
/// batch, with its planned message applied, is the map the index gives it after the batch.
/// </para>
/// </summary>
internal static class DeltaPlanner
{
    public static DeltaPlan Plan(ClassIndex index, MapSubscribers subscribers, TailnetChanges changes) =>
        changes.PolicyJson is { } policyJson
            ? PlanWithNewPolicy(index, subscribers, changes, policyJson)
            : PlanByClass(index, subscribers, changes);

    /// <summary>The common case: node changes under an unchanged policy, routed by class (<see cref="ClassRouting"/>).</summary>
    private static DeltaPlan PlanByClass(ClassIndex index, MapSubscribers subscribers, TailnetChanges changes)
    {
        var routing = new ClassRouting(index, subscribers);
        foreach (var node in changes.Changed)
        {
            routing.Change(node);
        }

        foreach (var id in changes.Removed)
        {
            routing.Remove(id);
        }

        return routing.Finish(changes);
    }

    /// <summary>A policy change (rare): every subscriber's peers are compared before and after; each gets what it gained
    /// and lost, and its new packet filter. Costs subscribers × nodes, once per policy change.</summary>
    private static DeltaPlan PlanWithNewPolicy(ClassIndex index, MapSubscribers subscribers, TailnetChanges changes, string policyJson)
    {
        var plan = new DeltaPlan();
        var all = subscribers.All.ToArray();
        var before = all.ToDictionary(s => s, s => (
            Peers: index.PeerIds(s.Class, s.SelfId),
            Filter: index.Policy.FilterFor(s.Class),
            Self: index.Get(s.SelfId) ?? s.Self));

        foreach (var node in changes.Changed)
        {
            index.Put(node);
            foreach (var own in subscribers.Of(node.Id))
            {
                if (!plan.IsClosed(own) && own.EndedBy(node.Record) is { } reason)
                {
                    plan.Close(own, reason);
                }
            }
        }

        foreach (var id in changes.Removed)
        {
            index.Remove(id);
            foreach (var own in subscribers.Of(id))
            {
                plan.Close(own, "node removed");
            }
        }

        index.SetPolicy(policyJson);
        var changedIds = changes.Changed.Select(n => n.Id).ToHashSet(StringComparer.Ordinal);
        foreach (var subscriber in all)
        {
            if (plan.IsClosed(subscriber))
            {
                continue;
            }

            var was = before[subscriber];
            var self = index.Get(subscriber.SelfId) ?? subscriber.Self;
            var selfClass = index.Policy.ClassOf(self.Record);
            plan.Place(subscriber, self, selfClass);
            var peers = index.PeerIds(selfClass, subscriber.SelfId);
            var delta = new DeltaBuilder();
            delta.Changed.AddRange(peers.Where(id => !was.Peers.Contains(id) || changedIds.Contains(id)).Select(id => index.Get(id)!));
            delta.Removed.AddRange(was.Peers.Where(id => !peers.Contains(id)));
            var filter = index.Policy.FilterFor(selfClass);
            var filterChanged = !SameFilter(filter, was.Filter);
            var selfChanged = changedIds.Contains(subscriber.SelfId) && was.Self.Record != self.Record;
            plan.Own[subscriber] = delta.IsEmpty && !filterChanged && !selfChanged
                ? null
                : delta.Build(changes, filterChanged ? filter : null, selfChanged ? self : null);
        }

        return plan;
    }

    private static bool SameFilter(PacketFilterRule[] a, PacketFilterRule[] b) =>
        a.Length == b.Length && a.Zip(b).All(p => p.First.Ports == p.Second.Ports && p.First.Sources.SequenceEqual(p.Second.Sources));

    /// <summary>
    /// One batch routed by class. A changed node is offered to each class of subscribers once; subscribers of one class
    /// see the same changes, so they share one delta (and its encodings). A subscriber gets its own message only when the
    /// batch touches its node. The cost of a batch is classes × changes plus the subscribers it reaches, not the size of
    /// the tailnet.
    /// </summary>
    private sealed class ClassRouting(ClassIndex index, MapSubscribers subscribers)
    {
        private readonly DeltaPlan _plan = new();
        private readonly Dictionary<string, DeltaBuilder> _byClass = new(StringComparer.Ordinal);
        private readonly HashSet<string> _touched = new(StringComparer.Ordinal);
        private readonly HashSet<MapSubscriber> _selfChanged = [];

        public void Change(NodeEntry node)
        {
            _touched.Add(node.Id);
            var previous = index.Get(node.Id);
            var oldClass = index.ClassOfNode(node.Id);
            var presenceOnly = previous is not null && previous.Record == node.Record;
            if (presenceOnly && previous!.Presence == node.Presence)
            {
                // Already known as it is (a snapshot taken while this batch was in its window included it): no news.
                return;
            }

            var newClass = index.Put(node);
            PlaceOwnSubscribers(node, previous, newClass);
            foreach (var subscriberClass in subscribers.Classes)
            {
                var seesNow = index.Policy.Visible(subscriberClass, newClass);
                var sawBefore = oldClass is not null && index.Policy.Visible(subscriberClass, oldClass);
                if (!seesNow)
                {
                    if (sawBefore)
                    {
                        For(subscriberClass).Removed.Add(node.Id);
                    }
                }
                else if (sawBefore && presenceOnly)
                {
                    For(subscriberClass).Patches.Add(new PresencePatch(node.Id, node.Presence.Online, node.Presence.LastSeen));
                }
                else
                {
                    For(subscriberClass).Changed.Add(node);
                }
            }
        }

        public void Remove(string id)
        {
            _touched.Add(id);
            foreach (var own in subscribers.Of(id))
            {
                _plan.Close(own, "node removed");
            }

            if (index.Remove(id) is not { } oldClass)
            {
                return;
            }

            foreach (var subscriberClass in subscribers.Classes)
            {
                if (index.Policy.Visible(subscriberClass, oldClass))
                {
                    For(subscriberClass).Removed.Add(id);
                }
            }
        }

        /// <summary>The plan: each class's shared delta, and the own message of each subscriber whose node was touched.</summary>
        public DeltaPlan Finish(TailnetChanges changes)
        {
            foreach (var (subscriberClass, builder) in _byClass)
            {
                _plan.Shared[subscriberClass] = builder.Build(changes, filter: null, self: null);
            }

            foreach (var id in _touched)
            {
                foreach (var own in subscribers.Of(id))
                {
                    if (_plan.IsClosed(own))
                    {
                        continue;
                    }

                    var (self, ownClass) = _plan.Placement(own);
                    if (ownClass != own.Class)
                    {
                        _plan.Own[own] = index.FullMap(changes.Version, self, ownClass);
                        continue;
                    }

                    // A node is never its own peer: its stream gets its class's delta without it.
                    var delta = _byClass.TryGetValue(own.Class, out var shared) ? shared.Without(id) : new DeltaBuilder();
                    var changedSelf = _selfChanged.Contains(own) ? self : null;
                    _plan.Own[own] = delta.IsEmpty && changedSelf is null ? null : delta.Build(changes, null, changedSelf);
                }
            }

            return _plan;
        }

        /// <summary>Where the streams of a changed node stand: ended (logged out, token replaced), re-classed (they start
        /// over with a full map), or with a new self (its own presence is news to no agent: only its record counts).</summary>
        private void PlaceOwnSubscribers(NodeEntry node, NodeEntry? previous, string newClass)
        {
            foreach (var own in subscribers.Of(node.Id))
            {
                if (_plan.IsClosed(own))
                {
                    continue;
                }

                if (own.EndedBy(node.Record) is { } reason)
                {
                    _plan.Close(own, reason);
                    continue;
                }

                var (known, _) = _plan.Placement(own);
                _plan.Place(own, node, newClass);
                if ((previous ?? known).Record != node.Record)
                {
                    _selfChanged.Add(own);
                }
            }
        }

        private DeltaBuilder For(string subscriberClass) =>
            _byClass.TryGetValue(subscriberClass, out var builder) ? builder : _byClass[subscriberClass] = new DeltaBuilder();
    }

    /// <summary>What a batch brings to a class of subscribers (or to one).</summary>
    private sealed class DeltaBuilder
    {
        public List<NodeEntry> Changed { get; private init; } = [];
        public List<string> Removed { get; private init; } = [];
        public List<PresencePatch> Patches { get; private init; } = [];

        public bool IsEmpty => Changed.Count == 0 && Removed.Count == 0 && Patches.Count == 0;

        /// <summary>The same, less anything about <paramref name="id"/>.</summary>
        public DeltaBuilder Without(string id) => new()
        {
            Changed = Changed.Where(n => n.Id != id).ToList(),
            Removed = Removed.Where(r => r != id).ToList(),
            Patches = Patches.Where(p => p.Id != id).ToList(),
        };

        public DeltaMessage Build(TailnetChanges changes, PacketFilterRule[]? filter, NodeEntry? self) =>
            new(changes.Version, Changed.ToArray(), Removed.ToArray(), self)
            {
                PeersChangedPatch = Patches.Count > 0 ? Patches.ToArray() : null,
                PacketFilter = filter,
                ChangedAt = changes.FirstChangeAt,
            };
    }
}

/// <summary>A batch's plan: the message each subscriber gets (its class's shared delta, unless it has its own), the
/// streams it ends, and where each subscriber it touched stands after it.</summary>
internal sealed class DeltaPlan
{
    private readonly Dictionary<MapSubscriber, string> _closes = [];

    /// <summary>Per class of subscribers (as filed before the batch), the delta they share.</summary>
    public Dictionary<string, DeltaMessage> Shared { get; } = new(StringComparer.Ordinal);

    /// <summary>Subscribers that do not get their class's delta: their own message instead, or none (null).</summary>
    public Dictionary<MapSubscriber, MapMessage?> Own { get; } = [];

    /// <summary>The streams the batch ends, and why.</summary>
    public IReadOnlyDictionary<MapSubscriber, string> Closes => _closes;

    /// <summary>The node and class each touched subscriber stands at after the batch.</summary>
    public Dictionary<MapSubscriber, (NodeEntry Self, string Class)> Placements { get; } = [];

    /// <summary>The message <paramref name="subscriber"/> gets from this batch, if any.</summary>
    public MapMessage? For(MapSubscriber subscriber) =>
        Own.TryGetValue(subscriber, out var own) ? own : Shared.GetValueOrDefault(subscriber.Class);

    public bool IsClosed(MapSubscriber subscriber) => _closes.ContainsKey(subscriber);

    public void Close(MapSubscriber subscriber, string reason)
    {
        if (_closes.TryAdd(subscriber, reason))
        {
            Own[subscriber] = null;
            Placements.Remove(subscriber);
        }
    }

    /// <summary>Where the subscriber stands so far in this batch.</summary>
    public (NodeEntry Self, string Class) Placement(MapSubscriber subscriber) =>
        Placements.TryGetValue(subscriber, out var placed) ? placed : (subscriber.Self, subscriber.Class);

    public void Place(MapSubscriber subscriber, NodeEntry self, string subscriberClass) => Placements[subscriber] = (self, subscriberClass);
}
