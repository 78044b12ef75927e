using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Policy;

namespace EphemeralOrleans.Gateway.Map;

/// <summary>
/// A gateway's copy of one tailnet's nodes and policy, each node filed by its class under the policy
/// (<see cref="PolicyVisibility"/>): a node's peers are the nodes of the classes its class sees, found without looking
/// at the others. Not thread-safe: its feed holds it under its lock.
/// </summary>
internal sealed class ClassIndex
{
    private readonly Dictionary<string, NodeEntry> _nodes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _classOf = new(StringComparer.Ordinal);
    private readonly Dictionary<string, HashSet<string>> _nodesByClass = new(StringComparer.Ordinal);
    private string? _policyJson;

    public PolicyVisibility Policy { get; private set; } = PolicyVisibility.AllowAll;

    public IReadOnlyCollection<NodeEntry> Nodes => _nodes.Values;

    public NodeEntry? Get(string id) => _nodes.GetValueOrDefault(id);

    /// <summary>The class the node is filed under; null when it is not known.</summary>
    public string? ClassOfNode(string id) => _classOf.GetValueOrDefault(id);

    /// <summary>Whether the policy pairs two known nodes (each is in the other's netmap).</summary>
    public bool Pairs(string fromId, string toId) =>
        _classOf.TryGetValue(fromId, out var from) && _classOf.TryGetValue(toId, out var to) && Policy.Visible(from, to);

    /// <summary>The visibility of a policy: the current one when the policy is the same (a resync or a renewal brings the
    /// unchanged policy along: no new parse, and the class cache stays warm).</summary>
    private PolicyVisibility Visibility(string? policyJson)
    {
        if (policyJson == _policyJson)
        {
            return Policy;
        }

        return policyJson is null ? PolicyVisibility.AllowAll : new PolicyVisibility(PolicyDocument.ParseStored(policyJson));
    }

    /// <summary>Replaces the nodes and the policy (a snapshot).</summary>
    public void Load(IEnumerable<NodeEntry> nodes, string? policyJson)
    {
        _nodes.Clear();
        foreach (var node in nodes)
        {
            _nodes[node.Id] = node;
        }

        SetPolicy(policyJson);
    }

    /// <summary>Files every node anew under <paramref name="policyJson"/>.</summary>
    public void SetPolicy(string? policyJson)
    {
        Policy = Visibility(policyJson);
        _policyJson = policyJson;
        _classOf.Clear();
        _nodesByClass.Clear();
        foreach (var node in _nodes.Values)
        {
            Put(node);
        }
    }

    /// <summary>Adds or replaces a node; returns its new class.</summary>
    public string Put(NodeEntry node)
    {
        var nodeClass = Policy.ClassOf(node.Record);
        if (_classOf.TryGetValue(node.Id, out var previous) && previous != nodeClass)
        {
            Unfile(node.Id, previous);
        }

        _nodes[node.Id] = node;
        _classOf[node.Id] = nodeClass;
        if (!_nodesByClass.TryGetValue(nodeClass, out var members))
        {
            _nodesByClass[nodeClass] = members = new HashSet<string>(StringComparer.Ordinal);
        }

        members.Add(node.Id);
        return nodeClass;
    }

    /// <summary>Forgets a node; returns the class it had, or null if it was not known.</summary>
    public string? Remove(string id)
    {
        _nodes.Remove(id);
        if (!_classOf.Remove(id, out var nodeClass))
        {
            return null;
        }

        Unfile(id, nodeClass);
        return nodeClass;
    }

    /// <summary>The peers of a node of class <paramref name="viewerClass"/>: every node of every class it sees, but itself.</summary>
    public HashSet<string> PeerIds(string viewerClass, string selfId)
    {
        var peers = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (nodeClass, ids) in _nodesByClass)
        {
            if (Policy.Visible(viewerClass, nodeClass))
            {
                peers.UnionWith(ids);
            }
        }

        peers.Remove(selfId);
        return peers;
    }

    /// <summary>The full map of a node of class <paramref name="viewerClass"/> (<paramref name="self"/> stands in for
    /// the node when the copy does not have it yet: its batch may still be in its window).</summary>
    public FullMapMessage FullMap(long version, NodeEntry self, string viewerClass) =>
        new(version, _nodes.GetValueOrDefault(self.Id) ?? self,
            PeerIds(viewerClass, self.Id).Select(id => _nodes[id]).ToArray(), Policy.FilterFor(viewerClass));

    private void Unfile(string id, string nodeClass)
    {
        if (_nodesByClass.TryGetValue(nodeClass, out var members) && members.Remove(id) && members.Count == 0)
        {
            _nodesByClass.Remove(nodeClass);
        }
    }
}
