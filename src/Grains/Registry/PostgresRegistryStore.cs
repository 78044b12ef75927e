using System.Text.Json;
using EphemeralOrleans.Contracts.Model;
using Npgsql;
using NpgsqlTypes;

namespace EphemeralOrleans.Grains.Registry;

/// <summary>The registry in the project's own <c>eo_registry</c> table: one row per node, one transaction per batch.</summary>
public sealed class PostgresRegistryStore(NpgsqlDataSource dataSource, string serviceId) : IRegistryStore
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public async Task<IReadOnlyCollection<NodeView>> LoadAsync(string tailnet, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("SELECT view, epoch FROM eo_registry WHERE serviceid = $1 AND tailnet = $2");
        command.Parameters.Add(new NpgsqlParameter { Value = serviceId });
        command.Parameters.Add(new NpgsqlParameter { Value = tailnet });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var nodes = new List<NodeView>();
        while (await reader.ReadAsync(cancellationToken))
        {
            var view = JsonSerializer.Deserialize<NodeView>(reader.GetString(0), Json)!;
            nodes.Add(view with { SessionEpoch = reader.GetInt32(1) });
        }

        return nodes;
    }

    public async Task ApplyAsync(string tailnet, IReadOnlyCollection<NodeView> upserts, IReadOnlyCollection<string> removals)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var batch = new NpgsqlBatch(connection);
        if (upserts.Count > 0)
        {
            var upsert = new NpgsqlBatchCommand("""
                INSERT INTO eo_registry (serviceid, tailnet, nodeid, view, epoch)
                SELECT $1, $2, u.nodeid, u.view::jsonb, u.epoch FROM unnest($3::text[], $4::text[], $5::int[]) AS u(nodeid, view, epoch)
                ON CONFLICT (serviceid, tailnet, nodeid) DO UPDATE SET view = excluded.view, epoch = excluded.epoch
                """);
            upsert.Parameters.Add(new NpgsqlParameter { Value = serviceId });
            upsert.Parameters.Add(new NpgsqlParameter { Value = tailnet });
            upsert.Parameters.Add(new NpgsqlParameter { Value = upserts.Select(n => n.Id).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            upsert.Parameters.Add(new NpgsqlParameter { Value = upserts.Select(n => JsonSerializer.Serialize(n with { Online = false }, Json)).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            upsert.Parameters.Add(new NpgsqlParameter { Value = upserts.Select(n => n.SessionEpoch).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Integer });
            batch.BatchCommands.Add(upsert);
        }

        if (removals.Count > 0)
        {
            var delete = new NpgsqlBatchCommand("DELETE FROM eo_registry WHERE serviceid = $1 AND tailnet = $2 AND nodeid = ANY($3)");
            delete.Parameters.Add(new NpgsqlParameter { Value = serviceId });
            delete.Parameters.Add(new NpgsqlParameter { Value = tailnet });
            delete.Parameters.Add(new NpgsqlParameter { Value = removals.ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            batch.BatchCommands.Add(delete);
        }

        // A multi-statement batch runs in one implicit transaction.
        await batch.ExecuteNonQueryAsync();
    }
}
