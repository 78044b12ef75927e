using System.Net;
using System.Text.Json;
using CsCheck;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Policy;
using EphemeralOrleans.Gateway.Map;

namespace EphemeralOrleans.Tests;

/// <summary>
/// The netmap's deltas are right by construction: for random tailnets, policies, subscribers and batches of changes
/// (joins, edits, re-tags, approvals, presence, logouts, replaced tokens, removals, policy changes), every agent's map
/// before a batch with its delta applied is exactly the map recomputed from scratch after it, and exactly the streams
/// whose node left, logged out or had its token replaced are closed. Once against the planner alone (one batch), once
/// through a gateway's feed and its streams (several batches in a row, the messages read as an agent reads them).
/// Bounded numbers of cases, so CI time stays fixed; a failure prints the seed that found it.
/// </summary>
public sealed class DeltaPlannerTests
{
    private const int Ids = 10;
    private const string Tailnet = "default";
    private static readonly string[] Targets = ["tag:a", "tag:b", "tag:c", "*"];

    private sealed record NodeSpec(int Tags, bool Authorized, bool Online, int Seen, int Host);

    /// <summary>What a batch does to node i: <see cref="Kinds"/>; and the policy it sets, if it sets one.</summary>
    private sealed record BatchSpec(int[] Kinds, NodeSpec[] Specs, bool SetsPolicy, string? Policy);

    private sealed record Scenario(NodeSpec[] Initial, bool[] Exists, int[] SubscribersOf, string? Policy, BatchSpec[] Batches)
    {
        public override string ToString() => JsonSerializer.Serialize(this);
    }

    private static class Kinds
    {
        public const int Join = 4, Presence = 5, LogOut = 6, NewToken = 7, Remove = 8, Edit = 9;
    }

    private static readonly Gen<NodeSpec> Spec = Gen.Select(Gen.Int[0, 7], Gen.Int[0, 4], Gen.Bool, Gen.Int[0, 3], Gen.Int[0, 1],
        (tags, authorized, online, seen, host) => new NodeSpec(tags, authorized > 0, online, seen, host));

    /// <summary>No policy (everyone sees everyone), or up to three rules between tags and <c>*</c>.</summary>
    private static readonly Gen<string?> Policy = Gen.Select(Gen.Int[-1, 3], Gen.Int[0, 3].Array[3], Gen.Int[0, 3].Array[3], Gen.Bool.Array[3],
        (count, sources, destinations, ssh) => count < 0 ? null : JsonSerializer.Serialize(new
        {
            acls = Enumerable.Range(0, count).Select(r => new
            {
                action = "accept",
                src = new[] { Targets[sources[r]] },
                dst = new[] { $"{Targets[destinations[r]]}:{(ssh[r] ? "22" : "*")}" },
            }),
        }));

    private static readonly Gen<BatchSpec> Batch = Gen.Select(Gen.Int[0, 9].Array[Ids], Spec.Array[Ids], Gen.Int[0, 3], Policy,
        (kinds, specs, policyChange, policy) => new BatchSpec(kinds, specs, policyChange == 0, policy));

    private static readonly Gen<Scenario> Scenarios = Gen.Select(Spec.Array[Ids], Gen.Int[0, 3].Array[Ids], Gen.Int[0, 4].Array[Ids], Policy, Batch.Array[1, 4],
        (initial, exists, subscribers, policy, batches) =>
            new Scenario(initial, exists.Select(e => e > 0).ToArray(), subscribers.Select(s => s switch { < 2 => 0, < 4 => 1, _ => 2 }).ToArray(), policy, batches));

    [Fact]
    public void A_planned_delta_applied_to_the_old_map_is_the_map_recomputed_after_the_batch()
    {
        Scenarios.Sample(scenario =>
        {
            var registry = Registry(scenario);
            var index = new ClassIndex();
            index.Load(registry.Values, scenario.Policy);
            var subscribers = new MapSubscribers();
            foreach (var (self, _) in Streams(scenario, registry))
            {
                subscribers.Add(new MapSubscriber(new MapStream(capacity: 16), self, self.Record.SessionEpoch),
                    index.Policy.ClassOf((index.Get(self.Id) ?? self).Record));
            }

            var maps = subscribers.All.ToDictionary(s => s, s => AgentMap.From(index.FullMap(0, s.Self, s.Class)));
            var changes = Changes(registry, scenario.Batches[0], version: 1);

            var plan = DeltaPlanner.Plan(index, subscribers, changes);

            foreach (var subscriber in subscribers.All)
            {
                var ends = EndedBy(subscriber, changes);
                Assert.Equal(ends, plan.Closes.GetValueOrDefault(subscriber));
                if (ends is not null)
                {
                    Assert.Null(plan.For(subscriber));
                    continue;
                }

                var (self, selfClass) = plan.Placement(subscriber);
                Assert.Equal(index.Policy.ClassOf((index.Get(subscriber.SelfId) ?? self).Record), selfClass);
                maps[subscriber].Apply(plan.For(subscriber), changes.Version);
                maps[subscriber].AssertEqual(index.FullMap(changes.Version, self, selfClass), subscriber.SelfId);
            }
        }, iter: 3_000);
    }

    [Fact]
    public void Through_a_feed_every_agent_keeps_the_map_recomputed_from_scratch_batch_after_batch()
    {
        using var fanout = new FanoutThreads(1);
        Scenarios.Sample(scenario =>
        {
            var registry = Registry(scenario);
            var feed = new TailnetFeed(Tailnet, fanout);
            feed.Load(new TailnetSnapshot(Tailnet, 0, registry.Values.ToArray()) { PolicyJson = scenario.Policy });
            var agents = Streams(scenario, registry).Select(s =>
            {
                var stream = new MapStream(capacity: 16);
                var subscriber = feed.Attach(stream, s.Self, s.Self.Record.SessionEpoch);
                var map = new AgentMap();
                map.Apply(Read(stream, feed, subscriber), version: 0); // the full map it starts from
                return (Subscriber: subscriber, Stream: stream, Map: map);
            }).ToList();

            var version = 0L;
            foreach (var batch in scenario.Batches)
            {
                var changes = Changes(registry, batch, ++version);
                Assert.True(feed.Apply(changes));
                foreach (var agent in agents.ToArray())
                {
                    while (agent.Stream.Pending > 0)
                    {
                        agent.Map.Apply(Read(agent.Stream, feed, agent.Subscriber), version);
                    }

                    if (EndedBy(agent.Subscriber, changes) is { } reason)
                    {
                        Assert.Equal(reason, agent.Stream.ClosedBecause);
                        Assert.Null(Read(agent.Stream, feed, agent.Subscriber));
                        feed.Detach(agent.Subscriber);
                        agents.Remove(agent);
                        continue;
                    }

                    Assert.Null(agent.Stream.ClosedBecause);
                    agent.Map.AssertEqual(feed.FullMap(agent.Subscriber), agent.Subscriber.SelfId);
                }
            }
        }, iter: 1_000);
    }

    [Fact]
    public void Streams_of_one_class_share_one_delta_and_only_a_touched_stream_gets_its_own()
    {
        var registry = Enumerable.Range(0, 4).Select(i => Entry(i, new NodeSpec(1, true, false, 0, 0))).ToDictionary(e => e.Id);
        var index = new ClassIndex();
        index.Load(registry.Values, null);
        var subscribers = new MapSubscribers();
        var all = registry.Values.Select(e => new MapSubscriber(new MapStream(capacity: 4), e, 0)).ToArray();
        foreach (var subscriber in all)
        {
            subscribers.Add(subscriber, index.Policy.ClassOf(subscriber.Self.Record));
        }

        var online = registry["n0"] with { Presence = new NodePresence(true, DateTimeOffset.UnixEpoch) };
        var plan = DeltaPlanner.Plan(index, subscribers, new TailnetChanges(Tailnet, 0, 1, [online], []));

        var shared = Assert.Single(plan.Shared.Values);
        Assert.Same(shared, plan.For(all[1]));
        Assert.Same(shared, plan.For(all[3]));
        Assert.Equal("n0", Assert.Single(shared.PeersChangedPatch!).Id); // presence alone: a patch, not the whole peer
        Assert.Empty(shared.PeersChanged);
        Assert.Null(plan.For(all[0])); // its own presence is news to no one connected as it
    }

    private static Dictionary<string, NodeEntry> Registry(Scenario scenario) =>
        Enumerable.Range(0, Ids).Where(i => scenario.Exists[i]).Select(i => Entry(i, scenario.Initial[i])).ToDictionary(e => e.Id);

    /// <summary>The streams the scenario opens: some nodes have none, some two; a node not in the registry yet opens
    /// with its own entry (its registration's batch is still in its window).</summary>
    private static IEnumerable<(NodeEntry Self, int Copy)> Streams(Scenario scenario, Dictionary<string, NodeEntry> registry) =>
        Enumerable.Range(0, Ids).SelectMany(i => Enumerable.Range(0, scenario.SubscribersOf[i])
            .Select(copy => (registry.GetValueOrDefault($"n{i}") ?? Entry(i, scenario.Initial[i]), copy)));

    /// <summary>The batch the registry sends for <paramref name="batch"/>, applied to <paramref name="registry"/>.</summary>
    private static TailnetChanges Changes(Dictionary<string, NodeEntry> registry, BatchSpec batch, long version)
    {
        var changed = new List<NodeEntry>();
        var removed = new List<string>();
        for (var i = 0; i < Ids; i++)
        {
            var current = registry.GetValueOrDefault($"n{i}");
            var next = batch.Kinds[i] switch
            {
                Kinds.Join or Kinds.Edit => Entry(i, batch.Specs[i], current?.Record.SessionEpoch ?? 0),
                Kinds.Presence when current is not null => current with
                {
                    Presence = new NodePresence(!current.Presence.Online, DateTimeOffset.UnixEpoch.AddMinutes(batch.Specs[i].Seen + 10)),
                },
                Kinds.LogOut when current is not null => current with { Record = current.Record with { LoggedOut = true } },
                Kinds.NewToken when current is not null => current with { Record = current.Record with { SessionEpoch = current.Record.SessionEpoch + 1 } },
                _ => null,
            };

            if (next is not null)
            {
                changed.Add(next);
                registry[next.Id] = next;
            }
            else if (batch.Kinds[i] == Kinds.Remove && current is not null)
            {
                removed.Add(current.Id);
                registry.Remove(current.Id);
            }
        }

        return new TailnetChanges(Tailnet, version - 1, version, changed.ToArray(), removed.ToArray())
        {
            PolicyJson = batch.SetsPolicy ? batch.Policy ?? PolicyDocument.AllowAllJson : null,
        };
    }

    private static string? EndedBy(MapSubscriber subscriber, TailnetChanges changes)
    {
        if (changes.Removed.Contains(subscriber.SelfId))
        {
            return "node removed";
        }

        return changes.Changed.FirstOrDefault(n => n.Id == subscriber.SelfId) is { } self ? subscriber.EndedBy(self.Record) : null;
    }

    private static MapMessage? Read(MapStream stream, TailnetFeed feed, MapSubscriber subscriber)
    {
        var next = stream.NextAsync(() => feed.FullMap(subscriber), CancellationToken.None);
        Assert.True(next.IsCompleted, "a queued message (or the end) is read without waiting");
        return next.Result;
    }

    private static NodeEntry Entry(int i, NodeSpec spec, int epoch = 0) =>
        new(new NodeRecord($"n{i}", $"node-{i}", (spec.Host == 0 ? "host-" : "box-") + i, "nodekey:" + i.ToString("x64"),
                IPAddress.Parse($"100.64.0.{i + 1}"), IPAddress.Parse($"fd7a:115c:a1e0::{i + 1:x}"), true,
                new ValueList<string>(Enumerable.Range(0, 3).Where(t => (spec.Tags & (1 << t)) != 0).Select(t => Targets[t])),
                DateTimeOffset.UnixEpoch, spec.Authorized, false, "key", Tailnet, epoch),
            new NodePresence(spec.Online, spec.Seen == 0 ? null : DateTimeOffset.UnixEpoch.AddMinutes(spec.Seen)));

    /// <summary>A netmap as an agent holds it: a full map replaces it, a delta edits it.</summary>
    private sealed class AgentMap
    {
        private readonly Dictionary<string, NodeEntry> _peers = new(StringComparer.Ordinal);
        private NodeEntry? _self;
        private PacketFilterRule[] _filter = [];

        public static AgentMap From(FullMapMessage map)
        {
            var agentMap = new AgentMap();
            agentMap.Apply(map, map.Version);
            return agentMap;
        }

        public void Apply(MapMessage? message, long version)
        {
            switch (message)
            {
                case FullMapMessage full:
                    Assert.Equal(version, full.Version);
                    _peers.Clear();
                    foreach (var peer in full.Peers)
                    {
                        _peers.Add(peer.Id, peer);
                    }

                    _self = full.Self;
                    _filter = full.PacketFilter;
                    break;
                case DeltaMessage delta:
                    Assert.Equal(version, delta.Version);
                    Assert.NotNull(_self);
                    foreach (var id in delta.PeersRemoved)
                    {
                        _peers.Remove(id);
                    }

                    foreach (var peer in delta.PeersChanged)
                    {
                        _peers[peer.Id] = peer;
                    }

                    foreach (var patch in delta.PeersChangedPatch ?? [])
                    {
                        Assert.True(_peers.TryGetValue(patch.Id, out var peer), $"a patch for {patch.Id}, which is not a peer");
                        _peers[patch.Id] = peer with { Presence = new NodePresence(patch.Online, patch.LastSeen) };
                    }

                    _self = delta.Self ?? _self;
                    _filter = delta.PacketFilter ?? _filter;
                    break;
            }
        }

        public void AssertEqual(FullMapMessage expected, string selfId)
        {
            Assert.Equal(expected.Self.Record, _self?.Record); // its own presence is not sent to it
            Assert.Equal(expected.Peers.OrderBy(p => p.Id, StringComparer.Ordinal), _peers.Values.OrderBy(p => p.Id, StringComparer.Ordinal));
            Assert.DoesNotContain(selfId, _peers.Keys);
            Assert.Equal(Describe(expected.PacketFilter), Describe(_filter));
        }

        private static string Describe(PacketFilterRule[] filter) =>
            string.Join("; ", filter.Select(r => $"{string.Join(",", r.Sources)} -> {r.Ports}"));
    }
}
