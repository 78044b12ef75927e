using EphemeralOrleans.Grains.Identity;
using EphemeralOrleans.Grains.Storage;
using EphemeralOrleans.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace EphemeralOrleans.Tests;

/// <summary>
/// The token ledger's stores, embedded and PostgreSQL, held to the same rules: a token registers one node key until it
/// expires (the same node key may come back), concurrent claims of one token by different node keys leave exactly one
/// winner, and pruning deletes the expired records and only those.
/// </summary>
public sealed class TokenUseStoreTests : PostgresTest
{
    private static readonly DateTimeOffset Now = new(2026, 12, 7, 9, 0, 0, TimeSpan.Zero);

    [Fact]
    public Task Memory_store_keeps_the_rules() => KeepsTheRulesAsync(new MemoryTokenUseStore(), _ => Task.FromResult(-1));

    [PostgresFact]
    public async Task Postgres_store_keeps_the_rules_and_its_rows_are_pruned()
    {
        var connectionString = await NewDatabaseAsync("tokenuses");
        await PostgresSchema.ApplyAsync(connectionString, NullLogger.Instance);
        await using var dataSource = NpgsqlDataSource.Create(connectionString);
        await KeepsTheRulesAsync(new PostgresTokenUseStore(dataSource, "svc"), async _ =>
        {
            await using var count = dataSource.CreateCommand("SELECT count(*)::integer FROM eo_token_uses");
            return (int)(await count.ExecuteScalarAsync())!;
        });

        // Another service's records in the same database are its own.
        var other = new PostgresTokenUseStore(dataSource, "other");
        Assert.True(await other.ClaimAsync(Hash(1), NodeKey('c'), Now.AddMinutes(10), Now));

        // A database from before version 3 kept token uses as grain states ('tokenUse'); the upgrade drops them.
        await using (var downgrade = dataSource.CreateCommand("""
            DELETE FROM eo_schema_version WHERE version = 3;
            INSERT INTO orleansstorage (grainidhash, grainidn0, grainidn1, graintypehash, graintypestring, grainidextensionstring, serviceid, payloadbinary, version)
            VALUES (1, 0, 0, 2, 'tokenUse', 'abc', 'svc', '\x00', 1), (3, 0, 0, 4, 'node', 'n1', 'svc', '\x00', 1);
            """))
        {
            await downgrade.ExecuteNonQueryAsync();
        }

        await PostgresSchema.ApplyAsync(connectionString, NullLogger.Instance); // as the next start does
        await using var left = dataSource.CreateCommand("SELECT string_agg(graintypestring, ',') FROM orleansstorage");
        Assert.Equal("node", await left.ExecuteScalarAsync());
    }

    private static async Task KeepsTheRulesAsync(ITokenUseStore store, Func<ITokenUseStore, Task<int>> rows)
    {
        var (token, a, b) = (Hash(1), NodeKey('a'), NodeKey('b'));
        Assert.True(await store.ClaimAsync(token, a, Now.AddMinutes(5), Now));
        Assert.False(await store.ClaimAsync(token, b, Now.AddMinutes(5), Now.AddMinutes(1)));
        Assert.True(await store.ClaimAsync(token, a, Now.AddMinutes(5), Now.AddMinutes(2))); // its agent restarted
        Assert.False(await store.ClaimAsync(token, b, Now.AddMinutes(5), Now.AddMinutes(4.9)));
        // Expired, the token is refused by validation anyway; its record no longer binds it.
        Assert.True(await store.ClaimAsync(token, b, Now.AddMinutes(15), Now.AddMinutes(5)));
        Assert.False(await store.ClaimAsync(token, a, Now.AddMinutes(15), Now.AddMinutes(6)));

        // Eight node keys race for one fresh token: one wins.
        var contested = Hash(2);
        var wins = await Task.WhenAll(Enumerable.Range(0, 8).Select(i => Task.Run(() => store.ClaimAsync(contested, NodeKey((char)('0' + i)), Now.AddMinutes(10), Now))));
        Assert.Equal(1, wins.Count(w => w));

        Assert.True(await store.ClaimAsync(Hash(3), a, Now.AddMinutes(1), Now));
        Assert.Equal(0, await store.PruneAsync(Now.AddSeconds(59), CancellationToken.None));
        Assert.Equal(1, await store.PruneAsync(Now.AddMinutes(1), CancellationToken.None)); // token 3, expired at 1 min
        if (await rows(store) is >= 0 and var count)
        {
            Assert.Equal(2, count);
        }

        Assert.Equal(2, await store.PruneAsync(Now.AddMinutes(15), CancellationToken.None));
        Assert.Equal(0, await store.PruneAsync(Now.AddHours(1), CancellationToken.None));
        Assert.True(await store.ClaimAsync(contested, b, Now.AddHours(2), Now.AddHours(1))); // pruned: free again
    }

    private static string Hash(int n) => n.ToString("x64");

    private static string NodeKey(char c) => "nodekey:" + new string(c, 64);
}
