using EphemeralOrleans.Gateway.Application;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace EphemeralOrleans.Gateway.WebConsole.Pages;

/// <summary>Exchanges the admin API key for a console session; signs out.</summary>
public sealed class SignInModel(AdminKey adminKey, AdminGuard guard) : PageModel
{
    [BindProperty]
    public string? ApiKey { get; set; }

    [BindProperty(SupportsGet = true)]
    public string? ReturnUrl { get; set; }

    public bool Failed { get; private set; }

    /// <summary>Set when this address tried too many wrong keys: the seconds to wait.</summary>
    public int? RetryAfterSeconds { get; private set; }

    public IActionResult OnGet() => User.Identity?.IsAuthenticated == true ? Redirect(Destination) : Page();

    public async Task<IActionResult> OnPostAsync()
    {
        if (guard.Refusal(ApiKey?.Trim(), HttpContext.Connection.RemoteIpAddress, "console") is { } refusal)
        {
            Failed = true;
            ApiKey = null;
            if (refusal.RetryAfter is { } wait)
            {
                RetryAfterSeconds = (int)Math.Ceiling(wait.TotalSeconds);
                Response.Headers.RetryAfter = RetryAfterSeconds.Value.ToString(System.Globalization.CultureInfo.InvariantCulture);
            }

            Response.StatusCode = RetryAfterSeconds is null ? StatusCodes.Status401Unauthorized : StatusCodes.Status429TooManyRequests;
            return Page();
        }

        await AdminConsole.SignInAsync(HttpContext, adminKey);
        guard.SignedIn(HttpContext.Connection.RemoteIpAddress);
        return Redirect(Destination);
    }

    public async Task<IActionResult> OnPostSignOutAsync()
    {
        await HttpContext.SignOutAsync(AdminConsole.Scheme);
        return Redirect(AdminConsole.Path + "/signin");
    }

    /// <summary>Where to go after signing in: a console page only, never another site.</summary>
    private string Destination =>
        ReturnUrl is { } url && url.StartsWith(AdminConsole.Path + "/", StringComparison.Ordinal) && !url.StartsWith("//", StringComparison.Ordinal)
            ? url
            : AdminConsole.Path + "/devices";
}
