using System.Text.Json;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Gateway.Application;
using Microsoft.AspNetCore.Mvc;

namespace EphemeralOrleans.Gateway.WebConsole.Pages;

/// <summary>View and edit the tailnet's ACL policy; a refused policy is shown with its error and the stored one stays.</summary>
public sealed class PolicyModel(ControlPlane controlPlane) : ConsolePage(controlPlane)
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    [BindProperty]
    public string? Text { get; set; }

    public string? ValidationError { get; private set; }

    public async Task OnGetAsync() => Text = Pretty(await ControlPlane.GetPolicyAsync(Tailnet));

    public async Task<IActionResult> OnPostAsync()
    {
        try
        {
            await ControlPlane.SetPolicyAsync(Tailnet, Text ?? "");
        }
        catch (ControlPlaneException exception)
        {
            // The operator's text stays in the editor beside the error; the stored policy is unchanged.
            ValidationError = exception.Failure.Detail;
            Response.StatusCode = StatusCodes.Status400BadRequest;
            return Page();
        }

        Notice = "Policy saved.";
        return Redirect(Link("policy"));
    }

    private static string Pretty(string json)
    {
        using var document = JsonDocument.Parse(json);
        return JsonSerializer.Serialize(document.RootElement, Indented);
    }
}
