using Microsoft.Extensions.Logging;
using Npgsql;

namespace EphemeralOrleans.Grains.Storage;

/// <summary>Applies the project's PostgreSQL schema (tables and Orleans query rows); idempotent and safe to run from several hosts at once.</summary>
public static partial class PostgresSchema
{
    // An arbitrary constant: every host serializes its schema application on it.
    private const long AdvisoryLockKey = 0x456f5363686d61;

    public static async Task ApplyAsync(string connectionString, ILogger logger, CancellationToken cancellationToken = default)
    {
        var sql = await ReadScriptAsync();
        await using var connection = await OpenWithRetryAsync(connectionString, logger, cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using (var lockCommand = new NpgsqlCommand($"SELECT pg_advisory_xact_lock({AdvisoryLockKey})", connection, transaction))
        {
            await lockCommand.ExecuteNonQueryAsync(cancellationToken);
        }

        await using (var command = new NpgsqlCommand(sql, connection, transaction))
        {
            await command.ExecuteNonQueryAsync(cancellationToken);
        }

        await transaction.CommitAsync(cancellationToken);
        LogApplied(logger, connection.Database);
    }

    /// <summary>Waits for PostgreSQL to accept connections (it may still be starting, as in docker-compose).</summary>
    public static async Task<NpgsqlConnection> OpenWithRetryAsync(string connectionString, ILogger logger, CancellationToken cancellationToken, TimeSpan? patience = null)
    {
        var deadline = DateTime.UtcNow + (patience ?? TimeSpan.FromSeconds(60));
        var delay = TimeSpan.FromMilliseconds(250);
        while (true)
        {
            var connection = new NpgsqlConnection(connectionString);
            try
            {
                await connection.OpenAsync(cancellationToken);
                return connection;
            }
            catch (NpgsqlException exception) when (DateTime.UtcNow < deadline)
            {
                await connection.DisposeAsync();
                LogWaiting(logger, exception.Message);
                await Task.Delay(delay, cancellationToken);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(5).Ticks));
            }
        }
    }

    private static async Task<string> ReadScriptAsync()
    {
        await using var stream = typeof(PostgresSchema).Assembly.GetManifestResourceStream("EphemeralOrleans.Grains.Storage.Sql.postgres-schema.sql")
            ?? throw new InvalidOperationException("The schema script is not embedded.");
        using var reader = new StreamReader(stream);
        return await reader.ReadToEndAsync();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "PostgreSQL schema applied to database {Database}")]
    private static partial void LogApplied(ILogger logger, string database);

    [LoggerMessage(Level = LogLevel.Warning, Message = "PostgreSQL not reachable yet ({Reason}); retrying")]
    private static partial void LogWaiting(ILogger logger, string reason);
}
