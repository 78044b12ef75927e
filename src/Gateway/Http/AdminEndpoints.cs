using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Validation;
using EphemeralOrleans.Gateway.Application;

namespace EphemeralOrleans.Gateway.Http;

/// <summary>The admin API, behind the admin bearer key.</summary>
public static class AdminEndpoints
{
    public sealed record SettingsPatch(bool? DeviceApproval);
    public sealed record RenameRequest(string? Name);

    /// <summary>The admin key as bearer, and a valid tailnet name, before the handler runs (and so in the document).</summary>
    private static TBuilder RequireAdmin<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder =>
        builder.AddEndpointFilter(RequireAdminAndTailnet).RequiresBearer();

    public static void MapAdminApi(this IEndpointRouteBuilder app)
    {
        var tailnets = app.MapGroup("/api/v1/tailnets/{tailnet}").RequireAdmin().WithTags("admin")
            .ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status401Unauthorized)
            .ProducesProblem(StatusCodes.Status429TooManyRequests).ProducesProblem(StatusCodes.Status503ServiceUnavailable);

        // The admin log: uses of the admin key (sign-ins, failures, throttling, new addresses), which belong to no tailnet.
        app.MapGet("/api/v1/admin/events", async (ControlPlane controlPlane, string? since, string? type, string? node, string? limit) =>
                await EventsAsync(controlPlane, EventLogs.Admin, since, type, node, limit))
            .RequireAdmin().WithTags("admin").Produces<EventPage>()
            .ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status401Unauthorized)
            .ProducesProblem(StatusCodes.Status429TooManyRequests).ProducesProblem(StatusCodes.Status503ServiceUnavailable);

        tailnets.MapPost("/keys", async (HttpContext context, string tailnet, ControlPlane controlPlane) =>
        {
            var request = await RequestBodies.ReadAsync<CreateKeyRequest>(context);
            var created = await controlPlane.CreateKeyAsync(Tailnet(tailnet), request);
            return Results.Created($"/api/v1/tailnets/{created.Info.Tailnet}/keys/{created.Info.Id}", CreatedKeyResponse.From(created));
        }).AcceptsJson<CreateKeyRequest>().Produces<CreatedKeyResponse>(StatusCodes.Status201Created);
        tailnets.MapGet("/keys", async (string tailnet, ControlPlane controlPlane) =>
            Results.Ok(new KeyList(await controlPlane.ListKeysAsync(Tailnet(tailnet))))).Produces<KeyList>();
        tailnets.MapGet("/keys/{id}", async (string tailnet, string id, ControlPlane controlPlane) =>
            Results.Ok(await controlPlane.GetKeyAsync(Tailnet(tailnet), id))).Produces<AuthKeyInfo>().ProducesProblem(StatusCodes.Status404NotFound);
        tailnets.MapDelete("/keys/{id}", async (string tailnet, string id, ControlPlane controlPlane) =>
        {
            await controlPlane.RevokeKeyAsync(Tailnet(tailnet), id);
            return Results.NoContent();
        }).Produces(StatusCodes.Status204NoContent).ProducesProblem(StatusCodes.Status404NotFound);

        tailnets.MapPost("/trust-policies", async (HttpContext context, string tailnet, ControlPlane controlPlane) =>
        {
            var policy = await controlPlane.PutTrustPolicyAsync(Tailnet(tailnet), null, await RequestBodies.ReadAsync<TrustPolicyRequest>(context));
            return Results.Created($"/api/v1/tailnets/{policy.Tailnet}/trust-policies/{policy.Id}", TrustPolicyView.From(policy));
        }).AcceptsJson<TrustPolicyRequest>().Produces<TrustPolicyView>(StatusCodes.Status201Created).ProducesProblem(StatusCodes.Status409Conflict);
        tailnets.MapGet("/trust-policies", async (string tailnet, ControlPlane controlPlane) =>
            Results.Ok(new TrustPolicyList((await controlPlane.ListTrustPoliciesAsync(Tailnet(tailnet))).Select(TrustPolicyView.From).ToArray())))
            .Produces<TrustPolicyList>();
        tailnets.MapGet("/trust-policies/{id}", async (string tailnet, string id, ControlPlane controlPlane) =>
            Results.Ok(TrustPolicyView.From(await controlPlane.GetTrustPolicyAsync(Tailnet(tailnet), id))))
            .Produces<TrustPolicyView>().ProducesProblem(StatusCodes.Status404NotFound);
        tailnets.MapPut("/trust-policies/{id}", async (HttpContext context, string tailnet, string id, ControlPlane controlPlane) =>
            Results.Ok(TrustPolicyView.From(await controlPlane.PutTrustPolicyAsync(Tailnet(tailnet), id, await RequestBodies.ReadAsync<TrustPolicyRequest>(context)))))
            .AcceptsJson<TrustPolicyRequest>().Produces<TrustPolicyView>().ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict);
        tailnets.MapDelete("/trust-policies/{id}", async (string tailnet, string id, ControlPlane controlPlane) =>
        {
            await controlPlane.DeleteTrustPolicyAsync(Tailnet(tailnet), id);
            return Results.NoContent();
        }).Produces(StatusCodes.Status204NoContent).ProducesProblem(StatusCodes.Status404NotFound);

        tailnets.MapGet("/nodes", async (string tailnet, ControlPlane controlPlane) =>
            Results.Ok(new NodeList((await controlPlane.ListNodesAsync(Tailnet(tailnet))).Select(NodeView.From).ToArray()))).Produces<NodeList>();
        tailnets.MapGet("/nodes/{id}", async (string tailnet, string id, ControlPlane controlPlane) =>
            Results.Ok(NodeView.From(await controlPlane.GetNodeAsync(Tailnet(tailnet), id)))).Produces<NodeView>().ProducesProblem(StatusCodes.Status404NotFound);
        tailnets.MapDelete("/nodes/{id}", async (string tailnet, string id, ControlPlane controlPlane) =>
        {
            await controlPlane.DeleteNodeAsync(Tailnet(tailnet), id);
            return Results.NoContent();
        }).Produces(StatusCodes.Status204NoContent).ProducesProblem(StatusCodes.Status404NotFound);
        tailnets.MapPost("/nodes/{id}/approve", async (string tailnet, string id, ControlPlane controlPlane) =>
            Results.Ok(NodeView.From(await controlPlane.ApproveNodeAsync(Tailnet(tailnet), id)))).Produces<NodeView>().ProducesProblem(StatusCodes.Status404NotFound);
        tailnets.MapPost("/nodes/{id}/expire", async (string tailnet, string id, ControlPlane controlPlane) =>
        {
            await controlPlane.ExpireNodeAsync(Tailnet(tailnet), id);
            return Results.NoContent();
        }).Produces(StatusCodes.Status204NoContent).ProducesProblem(StatusCodes.Status404NotFound);
        tailnets.MapPost("/nodes/{id}/rename", async (HttpContext context, string tailnet, string id, ControlPlane controlPlane) =>
        {
            var request = await RequestBodies.ReadAsync<RenameRequest>(context);
            return Results.Ok(NodeView.From(await controlPlane.RenameNodeAsync(Tailnet(tailnet), id, request.Name)));
        }).AcceptsJson<RenameRequest>().Produces<NodeView>().ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict);

        // The policy document is JSON of its own (see the README's "Policy"), passed through as it was stored.
        tailnets.MapGet("/policy", async (string tailnet, ControlPlane controlPlane) =>
            Results.Content(await controlPlane.GetPolicyAsync(Tailnet(tailnet)), Json)).Produces<System.Text.Json.JsonElement>(contentType: Json);
        tailnets.MapPut("/policy", async (HttpContext context, string tailnet, ControlPlane controlPlane) =>
            Results.Content(await controlPlane.SetPolicyAsync(Tailnet(tailnet), await RequestBodies.ReadTextAsync(context)), Json))
            .AcceptsJson<System.Text.Json.JsonElement>().Produces<System.Text.Json.JsonElement>(contentType: Json);

        tailnets.MapPost("/webhooks", async (HttpContext context, string tailnet, ControlPlane controlPlane) =>
        {
            var created = await controlPlane.CreateWebhookAsync(Tailnet(tailnet), await RequestBodies.ReadAsync<CreateWebhookRequest>(context));
            return Results.Created($"/api/v1/tailnets/{Tailnet(tailnet)}/webhooks/{created.Info.Id}", CreatedWebhookResponse.From(created));
        }).AcceptsJson<CreateWebhookRequest>().Produces<CreatedWebhookResponse>(StatusCodes.Status201Created).ProducesProblem(StatusCodes.Status409Conflict);
        tailnets.MapGet("/webhooks", async (string tailnet, ControlPlane controlPlane) =>
            Results.Ok(new WebhookList(await controlPlane.ListWebhooksAsync(Tailnet(tailnet))))).Produces<WebhookList>();
        tailnets.MapGet("/webhooks/{id}", async (string tailnet, string id, ControlPlane controlPlane) =>
            Results.Ok(await controlPlane.GetWebhookAsync(Tailnet(tailnet), id))).Produces<WebhookInfo>().ProducesProblem(StatusCodes.Status404NotFound);
        tailnets.MapGet("/webhooks/{id}/attempts", async (string tailnet, string id, ControlPlane controlPlane) =>
            Results.Ok(new WebhookAttemptList(await controlPlane.ListWebhookAttemptsAsync(Tailnet(tailnet), id))))
            .Produces<WebhookAttemptList>().ProducesProblem(StatusCodes.Status404NotFound);
        tailnets.MapPost("/webhooks/{id}/resume", async (string tailnet, string id, ControlPlane controlPlane) =>
            Results.Ok(await controlPlane.ResumeWebhookAsync(Tailnet(tailnet), id))).Produces<WebhookInfo>().ProducesProblem(StatusCodes.Status404NotFound);
        tailnets.MapDelete("/webhooks/{id}", async (string tailnet, string id, ControlPlane controlPlane) =>
        {
            await controlPlane.DeleteWebhookAsync(Tailnet(tailnet), id);
            return Results.NoContent();
        }).Produces(StatusCodes.Status204NoContent).ProducesProblem(StatusCodes.Status404NotFound);

        tailnets.MapGet("/events", async (string tailnet, ControlPlane controlPlane, string? since, string? type, string? node, string? limit) =>
            await EventsAsync(controlPlane, Tailnet(tailnet), since, type, node, limit)).Produces<EventPage>();

        tailnets.MapGet("/settings", async (string tailnet, ControlPlane controlPlane) =>
            Results.Ok(await controlPlane.GetSettingsAsync(Tailnet(tailnet)))).Produces<TailnetSettings>();
        tailnets.MapPatch("/settings", async (HttpContext context, string tailnet, ControlPlane controlPlane) =>
        {
            var patch = await RequestBodies.ReadAsync<SettingsPatch>(context);
            return Results.Ok(await controlPlane.UpdateSettingsAsync(Tailnet(tailnet), patch.DeviceApproval));
        }).AcceptsJson<SettingsPatch>().Produces<TailnetSettings>();
    }

    private const string Json = "application/json";

    private static string Tailnet(string segment) => ControlPlane.Tailnet(segment);

    /// <summary>A page of a log. <paramref name="limit"/> stays text, so that a malformed one is refused as such (400), not by the binder.</summary>
    private static async Task<IResult> EventsAsync(ControlPlane controlPlane, string log, string? since, string? type, string? node, string? limit)
    {
        int? count = null;
        if (limit is { Length: > 0 } text)
        {
            count = int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var parsed) ? parsed : -1;
        }

        var (events, next) = await controlPlane.ListEventsAsync(log, since, type, node, count);
        return Results.Ok(new EventPage(events.Select(EventView.From).ToArray(), next.ToString(System.Globalization.CultureInfo.InvariantCulture)));
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
