using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Validation;
using EphemeralOrleans.Grains.Hosting;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;

namespace EphemeralOrleans.Gateway.Http;

/// <summary><c>/healthz</c> (the process is up) and <c>/readyz</c> (the silo and the storage answer).</summary>
public static class HealthEndpoints
{
    public static void MapHealth(this IEndpointRouteBuilder app)
    {
        app.MapGet("/healthz", () => Results.Ok(new HealthResponse("ok"))).WithTags("health").Produces<HealthResponse>();
        app.MapGet("/readyz", async (ClusterReadiness readiness, CancellationToken cancellationToken) =>
        {
            var (silo, storage) = await readiness.ProbeAsync(cancellationToken);
            var ready = silo == "ok" && storage == "ok";
            return Results.Json(new ReadinessResponse(ready ? "ready" : "not ready", silo, storage),
                statusCode: ready ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
        }).WithTags("health").Produces<ReadinessResponse>().Produces<ReadinessResponse>(StatusCodes.Status503ServiceUnavailable);
    }
}

/// <summary>Whether this gateway can serve: a grain call answers, and PostgreSQL does when it is the storage. Behind
/// <c>/readyz</c> and the standard gRPC health service.</summary>
public sealed class ClusterReadiness(IGrainFactory grains, IConfiguration configuration) : IHealthCheck
{
    private static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(5);

    public async Task<(string Silo, string Storage)> ProbeAsync(CancellationToken cancellationToken)
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
        return (silo, storage);
    }

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var (silo, storage) = await ProbeAsync(cancellationToken);
        return silo == "ok" && storage == "ok"
            ? HealthCheckResult.Healthy()
            : HealthCheckResult.Unhealthy($"silo: {silo}, storage: {storage}");
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
