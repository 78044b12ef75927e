using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using EphemeralOrleans.Contracts.Model;
using Npgsql;
using NpgsqlTypes;

namespace EphemeralOrleans.Grains.Registry;

/// <summary>
/// The registry in the project's own <c>eo_registry</c> table: one row per node, one transaction per batch. A row's
/// <c>view</c> is the node's <see cref="NodeRecord"/> as JSON (addresses as text, the session epoch included) plus its
/// last-seen time; presence beyond that is not stored (every loaded node is offline until its grain says otherwise).
/// </summary>
public sealed class PostgresRegistryStore(NpgsqlDataSource dataSource, string serviceId) : IRegistryStore
{
    private const string LastSeen = "lastSeen";

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        Converters = { new IPAddressJsonConverter(), new IPEndPointJsonConverter(), new ValueListJsonConverter<string>(), new ValueListJsonConverter<IPEndPoint>() },
    };

    public async Task<IReadOnlyCollection<NodeEntry>> LoadAsync(string tailnet, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("SELECT view FROM eo_registry WHERE serviceid = $1 AND tailnet = $2");
        command.Parameters.Add(new NpgsqlParameter { Value = serviceId });
        command.Parameters.Add(new NpgsqlParameter { Value = tailnet });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var nodes = new List<NodeEntry>();
        while (await reader.ReadAsync(cancellationToken))
        {
            nodes.Add(Parse(reader.GetString(0)));
        }

        return nodes;
    }

    public async Task ApplyAsync(string tailnet, IReadOnlyCollection<NodeEntry> upserts, IReadOnlyCollection<string> removals)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var batch = new NpgsqlBatch(connection);
        if (upserts.Count > 0)
        {
            var upsert = new NpgsqlBatchCommand("""
                INSERT INTO eo_registry (serviceid, tailnet, nodeid, view)
                SELECT $1, $2, u.nodeid, u.view::jsonb FROM unnest($3::text[], $4::text[]) AS u(nodeid, view)
                ON CONFLICT (serviceid, tailnet, nodeid) DO UPDATE SET view = excluded.view
                """);
            upsert.Parameters.Add(new NpgsqlParameter { Value = serviceId });
            upsert.Parameters.Add(new NpgsqlParameter { Value = tailnet });
            upsert.Parameters.Add(new NpgsqlParameter { Value = upserts.Select(n => n.Id).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            upsert.Parameters.Add(new NpgsqlParameter { Value = upserts.Select(Format).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
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

    private static string Format(NodeEntry entry)
    {
        var json = JsonSerializer.SerializeToNode(entry.Record, Json)!.AsObject();
        json[LastSeen] = JsonSerializer.SerializeToNode(entry.Presence.LastSeen, Json);
        return json.ToJsonString(Json);
    }

    private static NodeEntry Parse(string view)
    {
        var json = JsonNode.Parse(view)!.AsObject();
        var lastSeen = json[LastSeen]?.GetValue<DateTimeOffset>();
        return new NodeEntry(json.Deserialize<NodeRecord>(Json)!, new NodePresence(Online: false, lastSeen));
    }

    private sealed class IPAddressJsonConverter : JsonConverter<IPAddress>
    {
        public override IPAddress Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            IPAddress.Parse(reader.GetString() ?? throw new JsonException("An address may not be null."));

        public override void Write(Utf8JsonWriter writer, IPAddress value, JsonSerializerOptions options) => writer.WriteStringValue(value.ToString());
    }

    private sealed class IPEndPointJsonConverter : JsonConverter<IPEndPoint>
    {
        public override IPEndPoint Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            IPEndPoint.Parse(reader.GetString() ?? throw new JsonException("An endpoint may not be null."));

        public override void Write(Utf8JsonWriter writer, IPEndPoint value, JsonSerializerOptions options) => writer.WriteStringValue(value.ToString());
    }

    private sealed class ValueListJsonConverter<T> : JsonConverter<ValueList<T>>
    {
        public override ValueList<T> Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            new(JsonSerializer.Deserialize<T[]>(ref reader, options) ?? []);

        public override void Write(Utf8JsonWriter writer, ValueList<T> value, JsonSerializerOptions options) =>
            JsonSerializer.Serialize(writer, value.ToArray(), options);
    }
}
