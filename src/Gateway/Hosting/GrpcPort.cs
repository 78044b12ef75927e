using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace EphemeralOrleans.Gateway.Hosting;

/// <summary>
/// The gRPC port serves gRPC only (the services, health, reflection). It is the port agents must reach, so nothing
/// else may answer there: not the dashboard, the console, the metrics or the REST routes, which Kestrel would
/// otherwise serve on every endpoint (over h2c here). Connections to the <c>Grpc</c> endpoint are marked when
/// accepted; a request on a marked connection that is not gRPC gets a 404.
/// </summary>
public static class GrpcPort
{
    private const string Marker = "eo.grpc-port";

    /// <summary>Marks the connections of the <c>Grpc</c> Kestrel endpoint.</summary>
    public static void MarkGrpcEndpoint(KestrelServerOptions kestrel, IConfiguration configuration) =>
        kestrel.Configure(configuration.GetSection("Kestrel")).Endpoint("Grpc", endpoint =>
            endpoint.ListenOptions.Use(next => connection =>
            {
                connection.Items[Marker] = true;
                return next(connection);
            }));

    /// <summary>Refuses anything but gRPC on the gRPC port, before any other middleware sees it.</summary>
    public static void UseGrpcOnlyOnGrpcPort(this WebApplication app) => app.Use((context, next) =>
    {
        if (context.Features.Get<IConnectionItemsFeature>()?.Items.ContainsKey(Marker) == true
            && context.Request.ContentType?.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) != true)
        {
            context.Response.StatusCode = StatusCodes.Status404NotFound;
            return Task.CompletedTask;
        }

        return next(context);
    });
}
