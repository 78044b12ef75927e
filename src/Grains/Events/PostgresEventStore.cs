using EphemeralOrleans.Contracts.Model;
using Npgsql;
using NpgsqlTypes;

namespace EphemeralOrleans.Grains.Events;

/// <summary>
/// The audit log in the project's own <c>eo_events</c> table: a batch is one INSERT of arrays; a repeated <c>once</c>
/// is skipped by its unique index, a taken id fails the whole batch (the primary key).
/// </summary>
public sealed class PostgresEventStore(NpgsqlDataSource dataSource, string serviceId) : IEventStore
{
    public async Task<long> LastIdAsync(string tailnet)
    {
        await using var command = dataSource.CreateCommand("SELECT coalesce(max(id), 0) FROM eo_events WHERE serviceid = $1 AND tailnet = $2");
        command.Parameters.Add(new NpgsqlParameter { Value = serviceId });
        command.Parameters.Add(new NpgsqlParameter { Value = tailnet });
        return (long)(await command.ExecuteScalarAsync())!;
    }

    public async Task AppendAsync(string tailnet, IReadOnlyList<(AuditEvent Event, string? Once)> events)
    {
        await using var command = dataSource.CreateCommand("""
            INSERT INTO eo_events (serviceid, tailnet, id, time, type, actor, target, nodeid, data, once)
            SELECT $1, $2, e.id, e.time, e.type, e.actor, e.target, e.nodeid, e.data::jsonb, e.once
              FROM unnest($3::bigint[], $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
                   AS e(id, time, type, actor, target, nodeid, data, once)
            ON CONFLICT (serviceid, tailnet, once) WHERE once IS NOT NULL DO NOTHING
            """);
        command.Parameters.Add(new NpgsqlParameter { Value = serviceId });
        command.Parameters.Add(new NpgsqlParameter { Value = tailnet });
        command.Parameters.Add(new NpgsqlParameter { Value = events.Select(e => e.Event.Id).ToArray() });
        command.Parameters.Add(new NpgsqlParameter { Value = events.Select(e => e.Event.Time.ToUniversalTime()).ToArray() });
        command.Parameters.Add(new NpgsqlParameter { Value = events.Select(e => e.Event.Type).ToArray() });
        command.Parameters.Add(new NpgsqlParameter { Value = events.Select(e => e.Event.Actor).ToArray() });
        command.Parameters.Add(new NpgsqlParameter { Value = events.Select(e => e.Event.Target).ToArray() });
        command.Parameters.Add(new NpgsqlParameter { Value = events.Select(e => e.Event.NodeId).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
        command.Parameters.Add(new NpgsqlParameter { Value = events.Select(e => e.Event.Data).ToArray() });
        command.Parameters.Add(new NpgsqlParameter { Value = events.Select(e => e.Once).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
        try
        {
            await command.ExecuteNonQueryAsync();
        }
        catch (PostgresException exception) when (exception.SqlState == PostgresErrorCodes.UniqueViolation)
        {
            throw new EventIdConflictException(tailnet);
        }
    }

    public async Task<AuditEvent[]> ReadAsync(string tailnet, EventQuery query)
    {
        var family = query.Type is { } filter ? EventTypes.Family(filter) : null;
        await using var command = dataSource.CreateCommand($"""
            SELECT id, time, type, actor, target, nodeid, data::text FROM eo_events
             WHERE serviceid = $1 AND tailnet = $2 AND id > $3
               AND ($4::text IS NULL OR type = $4) AND ($5::text IS NULL OR starts_with(type, $5))
               AND ($6::text IS NULL OR nodeid = $6)
             ORDER BY id {(query.Newest ? "DESC" : "")} LIMIT $7
            """);
        command.Parameters.Add(new NpgsqlParameter { Value = serviceId });
        command.Parameters.Add(new NpgsqlParameter { Value = tailnet });
        command.Parameters.Add(new NpgsqlParameter { Value = query.After });
        command.Parameters.Add(new NpgsqlParameter { Value = family is null ? (object?)query.Type ?? DBNull.Value : DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)family ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)query.NodeId ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        command.Parameters.Add(new NpgsqlParameter { Value = query.Limit });
        var events = new List<AuditEvent>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            events.Add(new AuditEvent(reader.GetInt64(0), reader.GetFieldValue<DateTimeOffset>(1), reader.GetString(2), reader.GetString(3),
                reader.GetString(4), reader.IsDBNull(5) ? null : reader.GetString(5), reader.GetString(6)));
        }

        return [.. events];
    }

    public async Task<int> PruneAsync(DateTimeOffset before, CancellationToken cancellationToken)
    {
        // Each tailnet's newest event stays, however old: the next activation of its log numbers on from it.
        await using var command = dataSource.CreateCommand("""
            DELETE FROM eo_events e WHERE serviceid = $1 AND time < $2
               AND id < (SELECT max(id) FROM eo_events n WHERE n.serviceid = e.serviceid AND n.tailnet = e.tailnet)
            """);
        command.Parameters.Add(new NpgsqlParameter { Value = serviceId });
        command.Parameters.Add(new NpgsqlParameter { Value = before.ToUniversalTime() });
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
