using System.Net;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Grains.Registry;
using EphemeralOrleans.Grains.Storage;
using EphemeralOrleans.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace EphemeralOrleans.Tests;

/// <summary>The PostgreSQL registry: entries come back as they were stored, and rows of the first schema version load
/// after the upgrade with the session epoch they kept in a column of their own.</summary>
public sealed class RegistryStoreTests : PostgresTest
{
    [PostgresFact]
    public async Task Entries_round_trip_and_rows_from_before_the_upgrade_keep_their_session_epoch()
    {
        var connectionString = await NewDatabaseAsync("registry");
        await PostgresSchema.ApplyAsync(connectionString, NullLogger.Instance);
        await using var dataSource = NpgsqlDataSource.Create(connectionString);
        var store = new PostgresRegistryStore(dataSource, "svc");

        var seen = new DateTimeOffset(2026, 12, 1, 8, 30, 0, TimeSpan.Zero);
        var entry = new NodeEntry(
            new NodeRecord("abc-1", "db", "db.local", "nodekey:" + new string('a', 64), IPAddress.Parse("100.64.1.2"),
                IPAddress.Parse("fd7a:115c:a1e0::6440:102"), false, new ValueList<string>(["tag:db", "tag:prod"]),
                seen.AddDays(-1), true, false, "key1", "t1", 3)
            {
                Endpoints = new ValueList<IPEndPoint>([IPEndPoint.Parse("198.18.0.2:41641"), IPEndPoint.Parse("[2001:db8::2]:41641")]),
            },
            new NodePresence(true, seen));
        await store.ApplyAsync("t1", [entry], []);
        // Presence is not stored: a loaded node is offline until its grain says otherwise; last seen is kept.
        Assert.Equal(entry with { Presence = new NodePresence(false, seen) }, Assert.Single(await store.LoadAsync("t1", CancellationToken.None)));

        // A database of schema version 1, with a row as it wrote them: the API's node shape, the epoch beside it.
        await using (var downgrade = dataSource.CreateCommand("DELETE FROM eo_schema_version WHERE version = 2"))
        {
            await downgrade.ExecuteNonQueryAsync();
        }

        await using (var insert = dataSource.CreateCommand("""
            INSERT INTO eo_registry (serviceid, tailnet, nodeid, view, epoch) VALUES ('svc', 't2', 'old-1', $1::jsonb, 7)
            """))
        {
            insert.Parameters.Add(new NpgsqlParameter { Value = """
                {"id":"old-1","name":"old","hostname":"old","nodeKey":"nodekey:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                 "ipv4":"100.64.0.9","ipv6":"fd7a:115c:a1e0::6440:9","ephemeral":true,"tags":["tag:ci"],"online":false,
                 "lastSeen":"2026-11-30T10:00:00+00:00","created":"2026-11-30T09:00:00+00:00","authorized":true,"loggedOut":false,
                 "keyId":"key0","tailnet":"t2"}
                """ });
            await insert.ExecuteNonQueryAsync();
        }

        await PostgresSchema.ApplyAsync(connectionString, NullLogger.Instance); // as the next start does
        var old = Assert.Single(await store.LoadAsync("t2", CancellationToken.None));
        Assert.Equal(7, old.Record.SessionEpoch);
        Assert.Equal(IPAddress.Parse("100.64.0.9"), old.Record.Ipv4);
        Assert.Equal(new ValueList<string>(["tag:ci"]), old.Record.Tags);
        Assert.Equal(new NodePresence(false, DateTimeOffset.Parse("2026-11-30T10:00:00Z")), old.Presence);
        Assert.Empty(old.Record.Endpoints);

        await store.ApplyAsync("t2", [], ["old-1"]);
        Assert.Empty(await store.LoadAsync("t2", CancellationToken.None));
    }
}
