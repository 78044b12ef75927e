using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Validation;
using EphemeralOrleans.Grains.Hosting;
using Npgsql;

namespace EphemeralOrleans.Gateway.Http;

/// <summary><c>/healthz</c> (the process is up) and <c>/readyz</c> (the silo and the storage answer).</summary>
public static class HealthEndpoints
{
    private static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(5);

    public static void MapHealth(this IEndpointRouteBuilder app)
    {
        app.MapGet("/healthz", () => Results.Ok(new { status = "ok" }));
        app.MapGet("/readyz", async (IGrainFactory grains, IConfiguration configuration, CancellationToken cancellationToken) =>
        {
            var silo = await ProbeAsync(() => grains.GetGrain<ITailnetGrain>(Identifiers.DefaultTailnet).GetSettings());
            var storage = EphemeralHosting.Storage(configuration).Provider == StorageProvider.Postgres
                ? await ProbeAsync(async () =>
                {
                    await using var connection = new NpgsqlConnection(EphemeralHosting.PostgresConnectionString(configuration));
                    await connection.OpenAsync(cancellationToken);
                    await using var command = new NpgsqlCommand("SELECT 1", connection);
                    await command.ExecuteScalarAsync(cancellationToken);
                })
                : "ok";
            var ready = silo == "ok" && storage == "ok";
            return Results.Json(new { status = ready ? "ready" : "not ready", silo, storage },
                statusCode: ready ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
        });
    }

    private static async Task<string> ProbeAsync(Func<Task> probe)
    {
        try
        {
            await probe().WaitAsync(ProbeTimeout);
            return "ok";
        }
        catch (Exception exception)
        {
            return exception is TimeoutException ? "timeout" : "unreachable";
        }
    }
}
