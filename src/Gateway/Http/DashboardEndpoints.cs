using System.Net;
using System.Text;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Gateway.Application;
using Orleans.Dashboard;

namespace EphemeralOrleans.Gateway.Http;

/// <summary>
/// The Orleans dashboard at <c>/dashboard</c> (HTTP port only). Open to connections from this machine (the
/// connection's remote address is loopback, and no proxy forwarded the request: behind a reverse proxy every request
/// would look local); everyone else gives the admin key, as HTTP Basic (any user name, the key as password) so that a
/// browser can sign in, or as a bearer token.
/// </summary>
public static class DashboardEndpoints
{
    public static void MapDashboard(this WebApplication app)
    {
        var guard = app.Services.GetRequiredService<AdminGuard>();
        app.MapOrleansDashboard("/dashboard").AddEndpointFilter(async (invocation, next) =>
        {
            var context = invocation.HttpContext;
            var refusal = FromThisMachine(context) ? null : guard.Refusal(Credential(context), context.Connection.RemoteIpAddress, "dashboard");
            if (refusal is null)
            {
                return await next(invocation);
            }

            if (refusal.Kind == FailureKind.Throttled)
            {
                return Problems.From(refusal);
            }

            context.Response.Headers.WWWAuthenticate = "Basic realm=\"EphemeralOrleans dashboard\", charset=\"UTF-8\"";
            return Problems.Problem(StatusCodes.Status401Unauthorized, "admin_key_required",
                "The dashboard needs the admin API key (as the Basic password, or as a bearer token).");
        });
    }

    private static string? Credential(HttpContext context)
    {
        var header = context.Request.Headers.Authorization.ToString();
        if (header.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
        {
            try
            {
                var decoded = Encoding.UTF8.GetString(Convert.FromBase64String(header["Basic ".Length..].Trim()));
                var colon = decoded.IndexOf(':');
                return colon >= 0 ? decoded[(colon + 1)..] : null;
            }
            catch (FormatException)
            {
                return null;
            }
        }

        return RequestBodies.Bearer(context);
    }

    private static bool FromThisMachine(HttpContext context) =>
        context.Connection.RemoteIpAddress is { } remote && IPAddress.IsLoopback(remote)
        && !context.Request.Headers.ContainsKey("X-Forwarded-For") && !context.Request.Headers.ContainsKey("Forwarded");
}
