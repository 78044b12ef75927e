using System.Net;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>Expiring and renaming a node (admin), over HTTP and gRPC alike: what its agent and its peers notice.</summary>
public sealed class NodeAdminTests : GatewayTest
{
    private static readonly TimeSpan Within = TimeSpan.FromSeconds(20);

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task Expiring_a_node_ends_its_token_and_stream_an_ephemeral_one_goes_at_once(Transport transport)
    {
        var api = Gateway.Over(transport);
        var tailnet = $"expire-{transport}".ToLowerInvariant();
        var key = (await api.CreateKeyAsync(ephemeral: false, tailnet: tailnet)).Str("key");
        var ephemeralKey = (await api.CreateKeyAsync(ephemeral: true, tailnet: tailnet)).Str("key");
        var (kept, keptToken) = await api.RegisterAsync(key, hostname: "kept");
        var (gone, _) = await api.RegisterAsync(ephemeralKey, hostname: "gone");
        await using var stream = await api.OpenMapAsync(keptToken);

        Assert.Equal(HttpStatusCode.NoContent, (await api.ExpireNodeAsync(kept.Str("id"), tailnet)).Status);
        var after = (await api.GetNodeAsync(kept.Str("id"), tailnet))!.Value;
        Assert.True(after.GetProperty("loggedOut").GetBoolean());
        Assert.False(after.GetProperty("online").GetBoolean());
        // Its token no longer opens a stream; the one it had is closed.
        Assert.Equal(HttpStatusCode.Unauthorized, (await api.TryOpenMapAsync(keptToken)).Status);
        await stream.WaitForEndAsync(Within);

        Assert.Equal(HttpStatusCode.NoContent, (await api.ExpireNodeAsync(gone.Str("id"), tailnet)).Status);
        Assert.Null(await api.GetNodeAsync(gone.Str("id"), tailnet));
        Assert.Equal(HttpStatusCode.NotFound, (await api.ExpireNodeAsync(gone.Str("id"), tailnet)).Status);
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task A_renamed_node_is_known_by_its_new_name_to_its_peers_and_a_taken_or_bad_name_changes_nothing(Transport transport)
    {
        var api = Gateway.Over(transport);
        var tailnet = $"rename-{transport}".ToLowerInvariant();
        var key = (await api.CreateKeyAsync(tailnet: tailnet)).Str("key");
        var (a, _) = await api.RegisterAsync(key, hostname: "build");
        var (b, bToken) = await api.RegisterAsync(key, hostname: "other");
        await using var peer = await api.OpenMapAsync(bToken);
        await peer.WaitForAsync(m => m.Str("type") == "full", Within, "the full map");

        var renamed = await api.RenameNodeAsync(a.Str("id"), "db-primary", tailnet);
        Assert.Equal(HttpStatusCode.OK, renamed.Status);
        Assert.Equal("db-primary", renamed.Body.Str("name"));
        Assert.Equal("db-primary", (await api.GetNodeAsync(a.Str("id"), tailnet))!.Value.Str("name"));
        Assert.Contains(await api.ListNodesAsync(tailnet), n => n.Str("id") == a.Str("id") && n.Str("name") == "db-primary");
        // The peer learns it as a change.
        await peer.WaitForAsync(m => m.Str("type") == "delta" && m.GetProperty("peersChanged").EnumerateArray().Any(p => p.Str("id") == a.Str("id") && p.Str("name") == "db-primary"),
            Within, "a delta with the new name");

        var taken = await api.RenameNodeAsync(a.Str("id"), b.Str("name"), tailnet);
        Assert.Equal(HttpStatusCode.Conflict, taken.Status);
        Assert.Equal("name_taken", taken.Code);
        foreach (var bad in new[] { "", "-x", "UPPER", "a.b", new string('a', 64) })
        {
            var refused = await api.RenameNodeAsync(a.Str("id"), bad, tailnet);
            Assert.Equal(HttpStatusCode.BadRequest, refused.Status);
            Assert.Equal("invalid_name", refused.Code);
        }

        Assert.Equal("db-primary", (await api.GetNodeAsync(a.Str("id"), tailnet))!.Value.Str("name"));
        // The old name is free again: a new node with that hostname gets it.
        var (c, _) = await api.RegisterAsync(key, hostname: "build");
        Assert.Equal("build", c.Str("name"));
    }
}
