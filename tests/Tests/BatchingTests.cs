using System.Diagnostics;
using System.Text.Json;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>Changes are coalesced per batch window: many joins become one delta per affected stream, in order.</summary>
public sealed class BatchingTests : GatewayTest
{
    private static readonly TimeSpan Window = TimeSpan.FromSeconds(3);
    private static readonly TimeSpan Within = TimeSpan.FromSeconds(20);

    protected override IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Map:BatchWindow"] = Window.ToString(),
        // Longer than the window: the joined nodes, never connecting, must not be removed within it.
        ["Ephemeral:InactivityTimeout"] = "00:01:00",
    };

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task Two_hundred_joins_within_one_window_reach_each_stream_as_one_delta_with_rising_versions(Transport transport)
    {
        var api = Gateway.Over(transport);
        var tailnet = "batch-" + transport.ToString().ToLowerInvariant();
        var key = (await api.CreateKeyAsync(reusable: true, ephemeral: true, tailnet: tailnet)).Str("key");
        var watchers = new List<(string Id, MapReader Map, List<long> Versions)>();
        for (var i = 0; i < 3; i++)
        {
            var (node, token) = await api.RegisterAsync(key, hostname: $"watcher-{i}");
            watchers.Add((node.Str("id"), await api.OpenMapAsync(token), []));
        }

        // Settle: every watcher has seen the other two online (their own batch went out).
        foreach (var (id, map, versions) in watchers)
        {
            var online = new HashSet<string>();
            await map.WaitForAsync(m =>
            {
                Record(m, versions);
                if (m.Type() == "keepalive")
                {
                    return false;
                }

                foreach (var peer in m.TryGetProperty("peers", out var peers) ? peers.EnumerateArray() : m.GetProperty("peersChanged").EnumerateArray())
                {
                    if (peer.GetProperty("online").GetBoolean())
                    {
                        online.Add(peer.Str("id"));
                    }
                }

                foreach (var patch in m.TryGetProperty("peersChangedPatch", out var patches) && patches.ValueKind == JsonValueKind.Array ? patches.EnumerateArray() : [])
                {
                    if (patch.GetProperty("online").GetBoolean())
                    {
                        online.Add(patch.Str("id"));
                    }
                }

                return watchers.All(w => w.Id == id || online.Contains(w.Id));
            }, Within, "the other watchers online");
        }

        var registering = Stopwatch.StartNew();
        var joined = await Task.WhenAll(Enumerable.Range(0, 200).Select(i => api.RegisterAsync(key, hostname: $"job-{i}")));
        Assert.True(registering.Elapsed < Window, $"200 registrations took {registering.Elapsed}, longer than the {Window} window: the test proves nothing");
        var ids = joined.Select(j => j.Node.Str("id")).ToHashSet();

        foreach (var (_, map, versions) in watchers)
        {
            var delta = await map.WaitForAsync(m => Record(m, versions) && m.Type() == "delta" && m.Ids("peersChanged").Any(ids.Contains), Within, "the joins");
            Assert.Equal(ids.Count, delta.Ids("peersChanged").Count(ids.Contains));
            Assert.True(versions.SequenceEqual(versions.Order()) && versions.Distinct().Count() == versions.Count, $"versions out of order: {string.Join(", ", versions)}");
            await map.DisposeAsync();
        }
    }

    /// <summary>Notes a message's version (keepalives have none); always true, for use inside a match.</summary>
    private static bool Record(JsonElement message, List<long> versions)
    {
        if (message.TryGetProperty("version", out var version))
        {
            versions.Add(version.GetInt64());
        }

        return true;
    }
}
