using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Gateway.Application;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.Filters;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace EphemeralOrleans.Gateway.WebConsole.Pages;

/// <summary>What every signed-in console page has: the tailnet it shows, the tailnets to switch between, and a flash message.</summary>
public abstract class ConsolePage(ControlPlane controlPlane) : PageModel
{
    protected ControlPlane ControlPlane { get; } = controlPlane;

    /// <summary>The tailnet as the query string names it (<c>?tailnet=</c>); the default tailnet when absent.</summary>
    [BindProperty(SupportsGet = true, Name = "tailnet")]
    public string? TailnetQuery { get; set; }

    public string Tailnet { get; private set; } = "";

    /// <summary>The tailnets to switch between: read by the layout, so only full pages pay for it (not the list's
    /// two-second refresh, nor a change that redirects).</summary>
    public Task<string[]> TailnetsAsync() => ControlPlane.ListTailnetsAsync();

    [TempData]
    public string? Notice { get; set; }

    [TempData]
    public string? Error { get; set; }

    public override void OnPageHandlerExecuting(PageHandlerExecutingContext context)
    {
        Tailnet = ControlPlane.Tailnet(TailnetQuery);
        // The audit log's actor for every grain call this page makes.
        Orleans.Runtime.RequestContext.Set(Contracts.Model.EventActors.ContextKey, Contracts.Model.EventActors.Console);
    }

    /// <summary>A console URL in the current tailnet.</summary>
    public string Link(string page, string? query = null) =>
        $"{AdminConsole.Path}/{page}?tailnet={Uri.EscapeDataString(Tailnet)}{(query is null ? "" : "&" + query)}";

    /// <summary>Runs an operator's change; a refusal becomes the page's error message instead of an error page.</summary>
    protected async Task<IActionResult> ChangeAsync(Func<Task<string>> change, string returnTo)
    {
        try
        {
            Notice = await change();
        }
        catch (ControlPlaneException exception)
        {
            Error = exception.Failure.Detail;
        }

        return Redirect(returnTo);
    }

    public static string Ago(DateTimeOffset? time, DateTimeOffset now)
    {
        if (time is not { } t)
        {
            return "never";
        }

        var elapsed = now - t;
        return elapsed switch
        {
            { TotalMinutes: < 1 } => "just now",
            { TotalHours: < 1 } => $"{(int)elapsed.TotalMinutes} min ago",
            { TotalDays: < 1 } => $"{(int)elapsed.TotalHours} h ago",
            _ => $"{(int)elapsed.TotalDays} d ago",
        };
    }

    public static string Utc(DateTimeOffset time) => time.UtcDateTime.ToString("yyyy-MM-dd HH:mm 'UTC'");
}
