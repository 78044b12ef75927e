using System.Net;
using EphemeralOrleans.Contracts.Model;

namespace EphemeralOrleans.Contracts.Policy;

/// <summary>What a rule's source or destination names: everyone, a tag, a node name, or an address range.</summary>
public abstract record PolicyTarget
{
    public abstract bool Matches(NodeRecord node);

    /// <summary>Parses a target the validator accepted (<c>*</c>, <c>tag:…</c>, an address, a CIDR, or a node name).</summary>
    public static PolicyTarget Parse(string selector) =>
        selector == "*" ? AnyTarget.Instance
        : selector.StartsWith("tag:", StringComparison.Ordinal) ? new TagTarget(selector)
        : IPAddress.TryParse(selector, out var address) ? new PrefixTarget(new IPNetwork(address, address.GetAddressBytes().Length * 8))
        : IPNetwork.TryParse(selector, out var network) ? new PrefixTarget(network)
        : new NameTarget(selector);
}

public sealed record AnyTarget : PolicyTarget
{
    public static readonly AnyTarget Instance = new();

    public override bool Matches(NodeRecord node) => true;
}

public sealed record TagTarget(string Tag) : PolicyTarget
{
    public override bool Matches(NodeRecord node) => node.Tags.Contains(Tag);
}

public sealed record NameTarget(string Name) : PolicyTarget
{
    public override bool Matches(NodeRecord node) => node.Name == Name;
}

public sealed record PrefixTarget(IPNetwork Network) : PolicyTarget
{
    public override bool Matches(NodeRecord node) =>
        Network.Contains(node.Ipv4) || Network.Contains(node.Ipv6);
}

/// <summary>One destination of a rule: a target and the ports on it (<c>*</c>, <c>22,80</c>, <c>8000-8080</c>).</summary>
public sealed record PolicyDestination(PolicyTarget Target, string Ports);

/// <summary>An <c>accept</c> rule with groups expanded. <see cref="SourceText"/> keeps the sources as written
/// (groups expanded) for packet filters.</summary>
public sealed record PolicyRule(PolicyTarget[] Sources, string[] SourceText, PolicyDestination[] Destinations);

/// <summary>One entry of a node's packet filter: traffic from <see cref="Sources"/> to it on <see cref="Ports"/> is
/// accepted. Sources are <c>*</c>, addresses or CIDRs, tags or node names; an agent resolves tags and names against
/// its map's peers.</summary>
[GenerateSerializer, Immutable, Alias("eo.PacketFilterRule")]
public sealed record PacketFilterRule([property: Id(0)] string[] Sources, [property: Id(1)] string Ports);
