using EphemeralOrleans.Contracts.Model;

namespace EphemeralOrleans.Gateway.Map;

/// <summary>A map stream as its feed files it: the node it serves, the session epoch it was opened with, and the node's
/// class under the policy. Changed only by the feed, under its lock.</summary>
internal sealed class MapSubscriber(MapStream stream, NodeEntry self, int epoch)
{
    public MapStream Stream { get; } = stream;

    public string SelfId { get; } = self.Id;

    public int Epoch { get; } = epoch;

    /// <summary>The node's latest known entry: it stands in for the node in full maps built before the feed's copy has it.</summary>
    public NodeEntry Self { get; set; } = self;

    public string Class { get; set; } = "";

    /// <summary>Why a change to the node itself ends this stream (logged out, or its token replaced); null when it does not.</summary>
    public string? EndedBy(NodeRecord self) =>
        self.LoggedOut ? "logged out" : self.SessionEpoch != Epoch ? "token replaced" : null;
}

/// <summary>A feed's subscribers, by class (who a change reaches) and by node (whose own change it is). Not thread-safe:
/// its feed holds it under its lock.</summary>
internal sealed class MapSubscribers
{
    private readonly Dictionary<string, HashSet<MapSubscriber>> _byClass = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<MapSubscriber>> _byNode = new(StringComparer.Ordinal);

    public int Count { get; private set; }

    public IEnumerable<MapSubscriber> All => _byClass.Values.SelectMany(s => s);

    public IReadOnlyCollection<string> Classes => _byClass.Keys;

    public IReadOnlyCollection<MapSubscriber> InClass(string subscriberClass) =>
        _byClass.TryGetValue(subscriberClass, out var members) ? members : [];

    public IReadOnlyList<MapSubscriber> Of(string nodeId) => _byNode.TryGetValue(nodeId, out var own) ? own : [];

    public void Add(MapSubscriber subscriber, string subscriberClass)
    {
        File(subscriber, subscriberClass);
        if (!_byNode.TryGetValue(subscriber.SelfId, out var own))
        {
            _byNode[subscriber.SelfId] = own = [];
        }

        own.Add(subscriber);
        Count++;
    }

    public void Remove(MapSubscriber subscriber)
    {
        if (!Unfile(subscriber))
        {
            return;
        }

        Count--;
        if (_byNode.TryGetValue(subscriber.SelfId, out var own) && own.Remove(subscriber) && own.Count == 0)
        {
            _byNode.Remove(subscriber.SelfId);
        }
    }

    /// <summary>Records the subscriber's node as it now is, and refiles it when its class changed.</summary>
    public void Move(MapSubscriber subscriber, NodeEntry self, string subscriberClass)
    {
        subscriber.Self = self;
        if (subscriber.Class != subscriberClass && Unfile(subscriber))
        {
            File(subscriber, subscriberClass);
        }
    }

    private void File(MapSubscriber subscriber, string subscriberClass)
    {
        subscriber.Class = subscriberClass;
        if (!_byClass.TryGetValue(subscriberClass, out var members))
        {
            _byClass[subscriberClass] = members = [];
        }

        members.Add(subscriber);
    }

    private bool Unfile(MapSubscriber subscriber)
    {
        if (!_byClass.TryGetValue(subscriber.Class, out var members) || !members.Remove(subscriber))
        {
            return false;
        }

        if (members.Count == 0)
        {
            _byClass.Remove(subscriber.Class);
        }

        return true;
    }
}
