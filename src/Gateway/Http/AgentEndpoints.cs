using System.Text.Json;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Gateway.Application;
using EphemeralOrleans.Gateway.Hosting;
using EphemeralOrleans.Gateway.Map;
using EphemeralOrleans.Gateway.Relay;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;

namespace EphemeralOrleans.Gateway.Http;

/// <summary>The body of <c>PUT /api/v1/machine/self/endpoints</c>.</summary>
public sealed record SetEndpointsBody(string[]? Endpoints);

/// <summary>The agent API: register, the netmap stream, endpoints, logout, and where gRPC is.</summary>
public static class AgentEndpoints
{
    private static readonly ReadOnlyMemory<byte> Newline = "\n"u8.ToArray();

    public static void MapAgentApi(this IEndpointRouteBuilder app)
    {
        var machine = app.MapGroup("/api/v1/machine").WithTags("agent")
            .ProducesProblem(StatusCodes.Status400BadRequest).ProducesProblem(StatusCodes.Status401Unauthorized)
            .ProducesProblem(StatusCodes.Status429TooManyRequests).ProducesProblem(StatusCodes.Status503ServiceUnavailable);

        machine.MapPost("/register", async (HttpContext context, ControlPlane controlPlane) =>
        {
            var request = await RequestBodies.ReadAsync<RegisterRequest>(context);
            var (node, token) = await controlPlane.RegisterAsync(request, RequestBodies.Bearer(context), context.RequestAborted);
            return Results.Ok(new RegisterResponse(NodeView.From(node), token));
        }).AcceptsJson<RegisterRequest>().Produces<RegisterResponse>()
            .ProducesProblem(StatusCodes.Status403Forbidden).ProducesProblem(StatusCodes.Status409Conflict);

        machine.MapGet("/endpoints", async (HttpContext context, ControlPlane controlPlane, IOptions<GatewayOptions> options, IConfiguration configuration) =>
            Results.Ok(new EndpointsResponse(options.Value.GrpcUrl(configuration), await controlPlane.ControlKeyAsync(context.RequestAborted))))
            .Produces<EndpointsResponse>();

        machine.MapGet("/map", async (HttpContext context, ControlPlane controlPlane, MapHub hub) =>
        {
            var streamId = Guid.NewGuid().ToString("N");
            var (grain, session, slot) = await controlPlane.OpenSessionAsync(RequestBodies.Bearer(context), streamId);
            using var _ = slot;
            context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
            context.Response.ContentType = "application/x-ndjson";
            context.Response.Headers.CacheControl = "no-store";
            await context.Response.StartAsync(context.RequestAborted);
            var body = context.Response.Body;
            var gatewayStopping = await hub.RunStreamAsync(grain, session, streamId, async (message, cancellationToken) =>
            {
                await body.WriteAsync(message.Utf8Json(), cancellationToken);
                await body.WriteAsync(Newline, cancellationToken);
                await body.FlushAsync(cancellationToken);
            }, context.RequestAborted);
            if (gatewayStopping)
            {
                // Reset rather than end the response: an ended stream tells the agent its node is gone.
                context.Abort();
            }
            return Results.Empty;
        }).RequiresBearer().Produces<MapLine>(StatusCodes.Status200OK, "application/x-ndjson")
            .WithDescription("The netmap as NDJSON, one message a line: a `full` map first, then `delta`s, with `keepalive`s when silent (see docs/api.md).");

        machine.MapPut("/self/endpoints", async (HttpContext context, ControlPlane controlPlane) =>
        {
            var body = await RequestBodies.ReadAsync<SetEndpointsBody>(context);
            var node = await controlPlane.SetEndpointsAsync(RequestBodies.Bearer(context), body.Endpoints ?? []);
            return Results.Ok(new NodeResponse(NodeView.From(node)));
        }).RequiresBearer().AcceptsJson<SetEndpointsBody>().Produces<NodeResponse>();

        machine.MapGet("/relay", async (HttpContext context, ControlPlane controlPlane, RelayHub relay) =>
        {
            // The credential first: a caller without one learns nothing else about the route.
            var node = await controlPlane.AuthenticateAsync(RequestBodies.Bearer(context));
            if (!context.WebSockets.IsWebSocketRequest)
            {
                return Problems.Problem(StatusCodes.Status400BadRequest, "websocket_required",
                    "The relay is a WebSocket: connect with Upgrade: websocket and the node token as bearer.");
            }

            using var socket = await context.WebSockets.AcceptWebSocketAsync();
            await relay.RunAsync(socket, node.Record.Tailnet, node.Record.Id, context.RequestAborted);
            return Results.Empty;
        }).RequiresBearer().Produces(StatusCodes.Status101SwitchingProtocols)
            .WithDescription("The relay: a WebSocket (binary frames of WireGuard packets between the node and its peers; see docs/api.md).");

        machine.MapPost("/logout", async (HttpContext context, ControlPlane controlPlane, string? reason) =>
        {
            await controlPlane.LogoutAsync(RequestBodies.Bearer(context), reason ?? "");
            return Results.NoContent();
        }).RequiresBearer().Produces(StatusCodes.Status204NoContent);
    }
}
