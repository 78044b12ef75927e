using Npgsql;

namespace EphemeralOrleans.Grains.Identity;

/// <summary>
/// Token uses in the project's own <c>eo_token_uses</c> table: a claim is one statement (insert, or take over an
/// expired record or one of the same node key; the primary key decides races between silos), pruning one delete.
/// </summary>
public sealed class PostgresTokenUseStore(NpgsqlDataSource dataSource, string serviceId) : ITokenUseStore
{
    public async Task<bool> ClaimAsync(string replayKey, string nodeKey, DateTimeOffset expiresAt, DateTimeOffset now)
    {
        await using var command = dataSource.CreateCommand("""
            INSERT INTO eo_token_uses AS u (serviceid, replaykey, nodekey, expiresat) VALUES ($1, $2, $3, $4)
            ON CONFLICT (serviceid, replaykey) DO UPDATE SET nodekey = excluded.nodekey, expiresat = excluded.expiresat
             WHERE u.expiresat <= $5 OR u.nodekey = excluded.nodekey
            """);
        command.Parameters.Add(new NpgsqlParameter { Value = serviceId });
        command.Parameters.Add(new NpgsqlParameter { Value = replayKey });
        command.Parameters.Add(new NpgsqlParameter { Value = nodeKey });
        command.Parameters.Add(new NpgsqlParameter { Value = expiresAt.ToUniversalTime() });
        command.Parameters.Add(new NpgsqlParameter { Value = now.ToUniversalTime() });
        // One row inserted or updated: the token is this node key's; none: another's, not yet expired.
        return await command.ExecuteNonQueryAsync() == 1;
    }

    public async Task<int> PruneAsync(DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("DELETE FROM eo_token_uses WHERE serviceid = $1 AND expiresat <= $2");
        command.Parameters.Add(new NpgsqlParameter { Value = serviceId });
        command.Parameters.Add(new NpgsqlParameter { Value = now.ToUniversalTime() });
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
