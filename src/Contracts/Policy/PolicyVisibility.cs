using System.Collections.Concurrent;
using EphemeralOrleans.Contracts.Model;

namespace EphemeralOrleans.Contracts.Policy;

/// <summary>
/// Who sees whom under a policy, computed per <em>class</em> of nodes rather than per node: a node's class is the set
/// of the policy's targets it matches (and whether it is authorized), so nodes of one class are indistinguishable to
/// the policy. A tag-based policy has a handful of classes whatever the tailnet's size, which is what lets a change be
/// routed to the streams that can see it without looking at the others.
/// </summary>
public sealed class PolicyVisibility
{
    /// <summary>The class of nodes that are not authorized: they see no one and no one sees them.</summary>
    public const string Unauthorized = "-";

    private readonly PolicyTarget[] _targets;
    private readonly (int[] Sources, (int Target, string Ports)[] Destinations, string[] SourceText)[] _rules;
    private readonly ConcurrentDictionary<(string, string), bool> _visible = new();
    private readonly ConcurrentDictionary<string, PacketFilterRule[]> _filters = new();

    public PolicyVisibility(PolicyDocument policy)
    {
        var targets = new List<PolicyTarget>();
        int IndexOf(PolicyTarget target)
        {
            var index = targets.IndexOf(target);
            if (index < 0)
            {
                targets.Add(target);
                index = targets.Count - 1;
            }

            return index;
        }

        _rules = policy.Rules.Select(rule => (
            rule.Sources.Select(IndexOf).ToArray(),
            rule.Destinations.Select(d => (IndexOf(d.Target), d.Ports)).ToArray(),
            rule.SourceText)).ToArray();
        _targets = targets.ToArray();
    }

    public static PolicyVisibility AllowAll { get; } = new(PolicyDocument.AllowAll);

    /// <summary>The node's class: which targets it matches, as a string of 0s and 1s; <see cref="Unauthorized"/> when not authorized.</summary>
    public string ClassOf(NodeRecord node)
    {
        if (!node.Authorized)
        {
            return Unauthorized;
        }

        return string.Create(_targets.Length + 1, (node, _targets), static (span, state) =>
        {
            span[0] = '+';
            for (var i = 0; i < state._targets.Length; i++)
            {
                span[i + 1] = state._targets[i].Matches(state.node) ? '1' : '0';
            }
        });
    }

    /// <summary>Whether nodes of class <paramref name="a"/> and class <paramref name="b"/> are peers: either may reach the other.</summary>
    public bool Visible(string a, string b)
    {
        if (a == Unauthorized || b == Unauthorized)
        {
            return false;
        }

        return _visible.GetOrAdd((a, b), static (pair, self) => self.Reaches(pair.Item1, pair.Item2) || self.Reaches(pair.Item2, pair.Item1), this);
    }

    /// <summary>What may reach a node of class <paramref name="cls"/>: its packet filter.</summary>
    public PacketFilterRule[] FilterFor(string cls) =>
        cls == Unauthorized
            ? []
            : _filters.GetOrAdd(cls, static (c, self) => self._rules
                .SelectMany(rule => rule.Destinations.Where(d => c[d.Target + 1] == '1').Select(d => (rule.SourceText, d.Ports)))
                .GroupBy(e => e.Ports, StringComparer.Ordinal)
                .Select(g => new PacketFilterRule(g.SelectMany(e => e.SourceText).Distinct(StringComparer.Ordinal).ToArray(), g.Key))
                .ToArray(), this);

    private bool Reaches(string source, string destination) =>
        _rules.Any(rule => rule.Sources.Any(s => source[s + 1] == '1') && rule.Destinations.Any(d => destination[d.Target + 1] == '1'));
}
