using System.Net;
using System.Text;
using EphemeralOrleans.Gateway.Application;
using Orleans.Dashboard;

namespace EphemeralOrleans.Gateway.Http;

/// <summary>
/// The Orleans dashboard at <c>/dashboard</c>. Open when the HTTP endpoint is bound to loopback (only this machine
/// reaches it); otherwise it asks for the admin key, as HTTP Basic (any user name, the key as password) so that a
/// browser can sign in, or as a bearer token.
/// </summary>
public static class DashboardEndpoints
{
    public static void MapDashboard(this WebApplication app)
    {
        var open = IsLoopback(app.Configuration["Kestrel:Endpoints:Http:Url"]);
        var adminKey = app.Services.GetRequiredService<AdminKey>();
        app.MapOrleansDashboard("/dashboard").AddEndpointFilter(async (invocation, next) =>
        {
            var context = invocation.HttpContext;
            if (open || adminKey.Matches(Credential(context)))
            {
                return await next(invocation);
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

    private static bool IsLoopback(string? url) =>
        Uri.TryCreate(url, UriKind.Absolute, out var uri)
        && (uri.Host == "localhost" || (IPAddress.TryParse(uri.Host.Trim('[', ']'), out var address) && IPAddress.IsLoopback(address)));
}
