using System.Security.Cryptography;
using System.Text;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Validation;
using EphemeralOrleans.Gateway.Application;

namespace EphemeralOrleans.Gateway.Http;

/// <summary>The admin API, behind the admin bearer key.</summary>
public static class AdminEndpoints
{
    private sealed record SettingsPatch(bool? DeviceApproval);

    public static void MapAdminApi(this IEndpointRouteBuilder app)
    {
        var tailnets = app.MapGroup("/api/v1/tailnets/{tailnet}").AddEndpointFilter(RequireAdminAndTailnet);

        tailnets.MapPost("/keys", async (HttpContext context, string tailnet, ControlPlane controlPlane) =>
        {
            var request = await RequestBodies.ReadAsync<CreateKeyRequest>(context);
            var created = await controlPlane.CreateKeyAsync(Tailnet(tailnet), request);
            var info = created.Info;
            return Results.Created($"/api/v1/tailnets/{info.Tailnet}/keys/{info.Id}", new
            {
                info.Id,
                created.Key,
                info.Reusable,
                info.Ephemeral,
                info.Preauthorized,
                info.Tags,
                info.Created,
                info.Expires,
                info.Description,
            });
        });
        tailnets.MapGet("/keys", async (string tailnet, ControlPlane controlPlane) =>
            Results.Ok(new { keys = await controlPlane.ListKeysAsync(Tailnet(tailnet)) }));
        tailnets.MapGet("/keys/{id}", async (string tailnet, string id, ControlPlane controlPlane) =>
            Results.Ok(await controlPlane.GetKeyAsync(Tailnet(tailnet), id)));
        tailnets.MapDelete("/keys/{id}", async (string tailnet, string id, ControlPlane controlPlane) =>
        {
            await controlPlane.RevokeKeyAsync(Tailnet(tailnet), id);
            return Results.NoContent();
        });

        tailnets.MapGet("/nodes", async (string tailnet, ControlPlane controlPlane) =>
            Results.Ok(new { nodes = await controlPlane.ListNodesAsync(Tailnet(tailnet)) }));
        tailnets.MapGet("/nodes/{id}", async (string tailnet, string id, ControlPlane controlPlane) =>
            Results.Ok(await controlPlane.GetNodeAsync(Tailnet(tailnet), id)));
        tailnets.MapDelete("/nodes/{id}", async (string tailnet, string id, ControlPlane controlPlane) =>
        {
            await controlPlane.DeleteNodeAsync(Tailnet(tailnet), id);
            return Results.NoContent();
        });
        tailnets.MapPost("/nodes/{id}/approve", async (string tailnet, string id, ControlPlane controlPlane) =>
            Results.Ok(await controlPlane.ApproveNodeAsync(Tailnet(tailnet), id)));

        tailnets.MapGet("/settings", async (string tailnet, ControlPlane controlPlane) =>
            Results.Ok(await controlPlane.GetSettingsAsync(Tailnet(tailnet))));
        tailnets.MapPatch("/settings", async (HttpContext context, string tailnet, ControlPlane controlPlane) =>
        {
            var patch = await RequestBodies.ReadAsync<SettingsPatch>(context);
            return Results.Ok(await controlPlane.UpdateSettingsAsync(Tailnet(tailnet), patch.DeviceApproval));
        });
    }

    private static string Tailnet(string segment) => Identifiers.TryTailnet(segment, out var tailnet) ? tailnet : segment;

    private static async ValueTask<object?> RequireAdminAndTailnet(EndpointFilterInvocationContext invocation, EndpointFilterDelegate next)
    {
        var context = invocation.HttpContext;
        if (!AdminKey.Matches(context, RequestBodies.Bearer(context)))
        {
            context.Response.Headers.WWWAuthenticate = "Bearer";
            return Problems.Problem(StatusCodes.Status401Unauthorized, "admin_key_required", "A valid admin API key is required (Authorization: Bearer …).");
        }

        if (!Identifiers.TryTailnet(context.GetRouteValue("tailnet") as string, out _))
        {
            return Problems.From(Failure.Invalid("invalid_tailnet", "The tailnet name must match [a-z0-9][a-z0-9.-]{0,62}, or be '-'."));
        }

        return await next(invocation);
    }
}

/// <summary>The admin API key, held only as a hash and compared in constant time.</summary>
public sealed class AdminKey(string key)
{
    private readonly byte[] _hash = SHA256.HashData(Encoding.UTF8.GetBytes(key));

    public static bool Matches(HttpContext context, string? presented) =>
        presented is not null && context.RequestServices.GetRequiredService<AdminKey>().Matches(presented);

    public bool Matches(string presented) =>
        CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(presented)), _hash);
}
