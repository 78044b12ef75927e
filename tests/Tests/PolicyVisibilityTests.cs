using System.Net;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Policy;

namespace EphemeralOrleans.Tests;

/// <summary>Who sees whom under a policy, and each node's packet filter: tags, CIDRs, addresses, node names, groups,
/// <c>*</c>, and unapproved nodes.</summary>
public sealed class PolicyVisibilityTests
{
    private static NodeRecord Node(string name, string ipv4, bool authorized = true, params string[] tags) =>
        new($"n-{name}", name, name, "nodekey:" + new string('0', 64), IPAddress.Parse(ipv4), IPAddress.Parse("fd7a:115c:a1e0::1"), true,
            new ValueList<string>(tags), DateTimeOffset.UnixEpoch, authorized, false, "key", "default", 0);

    private static readonly NodeRecord Web = Node("web-1", "100.64.0.10", true, "tag:web");
    private static readonly NodeRecord Db = Node("db-1", "100.64.0.20", true, "tag:db");
    private static readonly NodeRecord Ci = Node("ci-1", "100.64.1.5", true, "tag:ci");
    private static readonly NodeRecord Laptop = Node("laptop", "100.70.0.1");
    private static readonly NodeRecord Pending = Node("pending", "100.64.0.30", false, "tag:web");

    private static bool Sees(PolicyVisibility policy, NodeRecord a, NodeRecord b) => policy.Visible(policy.ClassOf(a), policy.ClassOf(b));

    [Fact]
    public void Without_a_policy_every_authorized_node_sees_every_other_and_may_be_reached_from_anywhere()
    {
        var policy = PolicyVisibility.AllowAll;
        Assert.True(Sees(policy, Web, Laptop));
        Assert.True(Sees(policy, Ci, Db));
        var rule = Assert.Single(policy.FilterFor(policy.ClassOf(Db)));
        Assert.Equal(["*"], rule.Sources);
        Assert.Equal("*", rule.Ports);
    }

    [Fact]
    public void Peers_are_those_a_node_may_reach_or_that_may_reach_it_by_tag()
    {
        var policy = new PolicyVisibility(PolicyDocument.Parse("""
            {"acls":[{"action":"accept","src":["tag:web"],"dst":["tag:db:5432"]}]}
            """));
        Assert.True(Sees(policy, Web, Db));
        Assert.True(Sees(policy, Db, Web)); // the destination sees who may reach it
        Assert.False(Sees(policy, Ci, Db));
        Assert.False(Sees(policy, Laptop, Web));
        Assert.False(Sees(policy, Web, Web with { Id = "n-web-2", Name = "web-2" })); // nothing lets web reach web

        var filter = Assert.Single(policy.FilterFor(policy.ClassOf(Db)));
        Assert.Equal(["tag:web"], filter.Sources);
        Assert.Equal("5432", filter.Ports);
        Assert.Empty(policy.FilterFor(policy.ClassOf(Web)));
    }

    [Fact]
    public void Cidrs_addresses_names_and_groups_select_nodes()
    {
        var policy = new PolicyVisibility(PolicyDocument.Parse("""
            {
              "groups": {"group:builders": ["tag:ci", "alice@example.com"]},
              "acls": [
                {"action":"accept","src":["100.64.0.0/24"],"dst":["laptop:22"]},
                {"action":"accept","src":["group:builders"],"dst":["100.64.0.20:443,8000-8080"]},
              ],
            }
            """));
        Assert.True(Sees(policy, Web, Laptop));   // 100.64.0.10 is in 100.64.0.0/24
        Assert.True(Sees(policy, Db, Laptop));
        Assert.False(Sees(policy, Ci, Laptop));   // 100.64.1.5 is not
        Assert.True(Sees(policy, Ci, Db));        // tag:ci is a builder; db is 100.64.0.20
        Assert.False(Sees(policy, Ci, Web));

        Assert.Equal(["100.64.0.0/24"], Assert.Single(policy.FilterFor(policy.ClassOf(Laptop))).Sources);
        var dbFilter = policy.FilterFor(policy.ClassOf(Db));
        Assert.Contains(dbFilter, r => r.Ports == "443,8000-8080" && r.Sources.SequenceEqual(["tag:ci", "alice@example.com"]));
    }

    [Fact]
    public void An_unapproved_node_sees_no_one_and_no_one_sees_it_whatever_the_policy()
    {
        var policy = PolicyVisibility.AllowAll;
        Assert.Equal(PolicyVisibility.Unauthorized, policy.ClassOf(Pending));
        Assert.False(Sees(policy, Pending, Web));
        Assert.False(Sees(policy, Web, Pending));
        Assert.Empty(policy.FilterFor(policy.ClassOf(Pending)));
    }

    [Fact]
    public void Nodes_the_policy_cannot_tell_apart_share_a_class()
    {
        var policy = new PolicyVisibility(PolicyDocument.Parse("""{"acls":[{"action":"accept","src":["tag:ci"],"dst":["tag:ci:*"]}]}"""));
        var classes = Enumerable.Range(0, 1000).Select(i => policy.ClassOf(Node($"ci-{i}", $"100.64.{i / 250}.{i % 250 + 1}", true, "tag:ci")))
            .Concat(Enumerable.Range(0, 100).Select(i => policy.ClassOf(Node($"laptop-{i}", $"100.65.0.{i + 1}"))))
            .Distinct().Count();
        Assert.Equal(2, classes);
    }
}
