using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Validation;
using EphemeralOrleans.Gateway.Application;

namespace EphemeralOrleans.Gateway.Http;

/// <summary>The admin API, behind the admin bearer key.</summary>
public static class AdminEndpoints
{
    private sealed record SettingsPatch(bool? DeviceApproval);
    private sealed record RenameRequest(string? Name);

    public static void MapAdminApi(this IEndpointRouteBuilder app)
    {
        var tailnets = app.MapGroup("/api/v1/tailnets/{tailnet}").AddEndpointFilter(RequireAdminAndTailnet);

        // The admin log: uses of the admin key (sign-ins, failures, throttling, new addresses), which belong to no tailnet.
        app.MapGet("/api/v1/admin/events", async (HttpContext context, ControlPlane controlPlane) =>
            await EventsAsync(context, controlPlane, EventLogs.Admin)).AddEndpointFilter(RequireAdminAndTailnet);

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

        tailnets.MapPost("/trust-policies", async (HttpContext context, string tailnet, ControlPlane controlPlane) =>
        {
            var policy = await controlPlane.PutTrustPolicyAsync(Tailnet(tailnet), null, await RequestBodies.ReadAsync<TrustPolicyRequest>(context));
            return Results.Created($"/api/v1/tailnets/{policy.Tailnet}/trust-policies/{policy.Id}", TrustPolicyView.From(policy));
        });
        tailnets.MapGet("/trust-policies", async (string tailnet, ControlPlane controlPlane) =>
            Results.Ok(new { trustPolicies = (await controlPlane.ListTrustPoliciesAsync(Tailnet(tailnet))).Select(TrustPolicyView.From) }));
        tailnets.MapGet("/trust-policies/{id}", async (string tailnet, string id, ControlPlane controlPlane) =>
            Results.Ok(TrustPolicyView.From(await controlPlane.GetTrustPolicyAsync(Tailnet(tailnet), id))));
        tailnets.MapPut("/trust-policies/{id}", async (HttpContext context, string tailnet, string id, ControlPlane controlPlane) =>
            Results.Ok(TrustPolicyView.From(await controlPlane.PutTrustPolicyAsync(Tailnet(tailnet), id, await RequestBodies.ReadAsync<TrustPolicyRequest>(context)))));
        tailnets.MapDelete("/trust-policies/{id}", async (string tailnet, string id, ControlPlane controlPlane) =>
        {
            await controlPlane.DeleteTrustPolicyAsync(Tailnet(tailnet), id);
            return Results.NoContent();
        });

        tailnets.MapGet("/nodes", async (string tailnet, ControlPlane controlPlane) =>
            Results.Ok(new { nodes = (await controlPlane.ListNodesAsync(Tailnet(tailnet))).Select(NodeView.From) }));
        tailnets.MapGet("/nodes/{id}", async (string tailnet, string id, ControlPlane controlPlane) =>
            Results.Ok(NodeView.From(await controlPlane.GetNodeAsync(Tailnet(tailnet), id))));
        tailnets.MapDelete("/nodes/{id}", async (string tailnet, string id, ControlPlane controlPlane) =>
        {
            await controlPlane.DeleteNodeAsync(Tailnet(tailnet), id);
            return Results.NoContent();
        });
        tailnets.MapPost("/nodes/{id}/approve", async (string tailnet, string id, ControlPlane controlPlane) =>
            Results.Ok(NodeView.From(await controlPlane.ApproveNodeAsync(Tailnet(tailnet), id))));
        tailnets.MapPost("/nodes/{id}/expire", async (string tailnet, string id, ControlPlane controlPlane) =>
        {
            await controlPlane.ExpireNodeAsync(Tailnet(tailnet), id);
            return Results.NoContent();
        });
        tailnets.MapPost("/nodes/{id}/rename", async (HttpContext context, string tailnet, string id, ControlPlane controlPlane) =>
        {
            var request = await RequestBodies.ReadAsync<RenameRequest>(context);
            return Results.Ok(NodeView.From(await controlPlane.RenameNodeAsync(Tailnet(tailnet), id, request.Name)));
        });

        tailnets.MapGet("/policy", async (string tailnet, ControlPlane controlPlane) =>
            Results.Content(await controlPlane.GetPolicyAsync(Tailnet(tailnet)), "application/json"));
        tailnets.MapPut("/policy", async (HttpContext context, string tailnet, ControlPlane controlPlane) =>
            Results.Content(await controlPlane.SetPolicyAsync(Tailnet(tailnet), await RequestBodies.ReadTextAsync(context)), "application/json"));

        tailnets.MapPost("/webhooks", async (HttpContext context, string tailnet, ControlPlane controlPlane) =>
        {
            var created = await controlPlane.CreateWebhookAsync(Tailnet(tailnet), await RequestBodies.ReadAsync<CreateWebhookRequest>(context));
            var info = created.Info;
            return Results.Created($"/api/v1/tailnets/{Tailnet(tailnet)}/webhooks/{info.Id}", new
            {
                info.Id, info.Url, info.Types, info.Description, info.Created, created.Secret,
            });
        });
        tailnets.MapGet("/webhooks", async (string tailnet, ControlPlane controlPlane) =>
            Results.Ok(new { webhooks = await controlPlane.ListWebhooksAsync(Tailnet(tailnet)) }));
        tailnets.MapGet("/webhooks/{id}", async (string tailnet, string id, ControlPlane controlPlane) =>
            Results.Ok(await controlPlane.GetWebhookAsync(Tailnet(tailnet), id)));
        tailnets.MapGet("/webhooks/{id}/attempts", async (string tailnet, string id, ControlPlane controlPlane) =>
            Results.Ok(new { attempts = await controlPlane.ListWebhookAttemptsAsync(Tailnet(tailnet), id) }));
        tailnets.MapPost("/webhooks/{id}/resume", async (string tailnet, string id, ControlPlane controlPlane) =>
            Results.Ok(await controlPlane.ResumeWebhookAsync(Tailnet(tailnet), id)));
        tailnets.MapDelete("/webhooks/{id}", async (string tailnet, string id, ControlPlane controlPlane) =>
        {
            await controlPlane.DeleteWebhookAsync(Tailnet(tailnet), id);
            return Results.NoContent();
        });

        tailnets.MapGet("/events", async (HttpContext context, string tailnet, ControlPlane controlPlane) =>
            await EventsAsync(context, controlPlane, Tailnet(tailnet)));

        tailnets.MapGet("/settings", async (string tailnet, ControlPlane controlPlane) =>
            Results.Ok(await controlPlane.GetSettingsAsync(Tailnet(tailnet))));
        tailnets.MapPatch("/settings", async (HttpContext context, string tailnet, ControlPlane controlPlane) =>
        {
            var patch = await RequestBodies.ReadAsync<SettingsPatch>(context);
            return Results.Ok(await controlPlane.UpdateSettingsAsync(Tailnet(tailnet), patch.DeviceApproval));
        });
    }

    private static string Tailnet(string segment) => ControlPlane.Tailnet(segment);

    private static async Task<IResult> EventsAsync(HttpContext context, ControlPlane controlPlane, string log)
    {
        var query = context.Request.Query;
        int? limit = null;
        if (query["limit"].ToString() is { Length: > 0 } text)
        {
            limit = int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var parsed) ? parsed : -1;
        }

        var (events, next) = await controlPlane.ListEventsAsync(log, query["since"], query["type"], query["node"], limit);
        return Results.Ok(new { events = events.Select(EventView.From), next = next.ToString(System.Globalization.CultureInfo.InvariantCulture) });
    }

    private static async ValueTask<object?> RequireAdminAndTailnet(EndpointFilterInvocationContext invocation, EndpointFilterDelegate next)
    {
        var context = invocation.HttpContext;
        if (context.RequestServices.GetRequiredService<AdminGuard>().Refusal(RequestBodies.Bearer(context), context.Connection.RemoteIpAddress, "admin_api") is { } refusal)
        {
            if (refusal.Kind == FailureKind.Unauthenticated)
            {
                context.Response.Headers.WWWAuthenticate = "Bearer";
            }

            return Problems.From(refusal);
        }

        ControlPlane.Tailnet(context.GetRouteValue("tailnet") as string);
        // The audit log's actor for every grain call this request makes.
        Orleans.Runtime.RequestContext.Set(EventActors.ContextKey, EventActors.AdminApi);
        return await next(invocation);
    }
}
