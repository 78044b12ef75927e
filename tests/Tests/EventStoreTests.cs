using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Grains.Events;
using EphemeralOrleans.Grains.Storage;
using EphemeralOrleans.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Npgsql;

namespace EphemeralOrleans.Tests;

/// <summary>
/// The audit log's stores, embedded and PostgreSQL, held to the same rules: queries filter and page by id, a repeated
/// 'once' is dropped, a taken id is refused, tailnets are apart, pruning deletes old events but never lets numbering
/// go back, and the embedded store keeps at most its capacity.
/// </summary>
public sealed class EventStoreTests : PostgresTest
{
    private static readonly DateTimeOffset Now = new(2026, 12, 7, 9, 0, 0, TimeSpan.Zero);

    [Fact]
    public async Task Memory_store_keeps_the_rules_and_its_capacity()
    {
        await KeepsTheRulesAsync(new MemoryEventStore(Options.Create(new EventOptions())));

        var small = new MemoryEventStore(Options.Create(new EventOptions { MemoryCapacity = 3 }));
        await small.AppendAsync("t", [.. Enumerable.Range(1, 5).Select(i => Entry(i, Now, "node.registered"))]);
        Assert.Equal([3L, 4, 5], (await small.ReadAsync("t", new EventQuery(0, 100))).Select(e => e.Id));
        Assert.Equal(5, await small.LastIdAsync("t"));
    }

    [PostgresFact]
    public async Task Postgres_store_keeps_the_rules()
    {
        var connectionString = await NewDatabaseAsync("events");
        await PostgresSchema.ApplyAsync(connectionString, NullLogger.Instance);
        await using var dataSource = NpgsqlDataSource.Create(connectionString);
        await KeepsTheRulesAsync(new PostgresEventStore(dataSource, "svc"));
        // Another service's log in the same database is its own.
        Assert.Equal(0, await new PostgresEventStore(dataSource, "other").LastIdAsync("t"));
    }

    private static async Task KeepsTheRulesAsync(IEventStore store)
    {
        await store.AppendAsync("t", [
            Entry(1, Now.AddDays(-100), "key.created"),
            Entry(2, Now.AddDays(-100), "node.registered", node: "n1"),
            Entry(3, Now.AddDays(-1), "node.removed", node: "n1", once: "removed:n1"),
        ]);
        // The same removal again (resumed after a crash) is dropped; the rest of its batch is written.
        await store.AppendAsync("t", [Entry(4, Now, "node.removed", node: "n1", once: "removed:n1"), Entry(5, Now, "node.registered", node: "n2")]);
        await store.AppendAsync("u", [Entry(1, Now, "key.created")]);

        Assert.Equal([1L, 2, 3, 5], (await store.ReadAsync("t", new EventQuery(0, 100))).Select(e => e.Id));
        Assert.Equal([3L, 5], (await store.ReadAsync("t", new EventQuery(2, 100))).Select(e => e.Id));
        Assert.Equal([1L, 2], (await store.ReadAsync("t", new EventQuery(0, 2))).Select(e => e.Id));
        Assert.Equal([2L, 5], (await store.ReadAsync("t", new EventQuery(0, 100, Type: "node.registered"))).Select(e => e.Id));
        Assert.Equal([2L, 3, 5], (await store.ReadAsync("t", new EventQuery(0, 100, Type: "node.*"))).Select(e => e.Id));
        Assert.Equal([2L, 3], (await store.ReadAsync("t", new EventQuery(0, 100, NodeId: "n1"))).Select(e => e.Id));
        Assert.Equal([5L, 3], (await store.ReadAsync("t", new EventQuery(0, 2, Newest: true))).Select(e => e.Id));
        Assert.Equal([5L, 2], (await store.ReadAsync("t", new EventQuery(0, 100, Type: "node.registered", Newest: true))).Select(e => e.Id));
        var read = (await store.ReadAsync("t", new EventQuery(2, 1))).Single();
        Assert.Equal((3L, Now.AddDays(-1), "node.removed", "system", "node:n1", "n1"), (read.Id, read.Time, read.Type, read.Actor, read.Target, read.NodeId));
        Assert.Equal("{\"reason\": \"logout\"}".Replace(" ", ""), read.Data.Replace(" ", ""));
        Assert.Equal(5, await store.LastIdAsync("t"));
        Assert.Equal(1, await store.LastIdAsync("u"));

        // A taken id (another activation of the log wrote it): refused, nothing of the batch written.
        await Assert.ThrowsAsync<EventIdConflictException>(() => store.AppendAsync("t", [Entry(6, Now, "key.revoked"), Entry(5, Now, "key.revoked")]));
        Assert.Equal(5, await store.LastIdAsync("t"));

        // Retention: older events go, but numbering never goes back, even when every event is old.
        Assert.Equal(2, await store.PruneAsync(Now.AddDays(-90), CancellationToken.None));
        Assert.Equal([3L, 5], (await store.ReadAsync("t", new EventQuery(0, 100))).Select(e => e.Id));
        await store.PruneAsync(Now.AddDays(1), CancellationToken.None);
        Assert.Equal(5, await store.LastIdAsync("t"));
        Assert.Equal(1, await store.LastIdAsync("u"));
    }

    private static (AuditEvent, string?) Entry(long id, DateTimeOffset time, string type, string? node = null, string? once = null) =>
        (new AuditEvent(id, time, type, "system", node is null ? "key:k" : $"node:{node}", node, "{\"reason\":\"logout\"}"), once);
}
