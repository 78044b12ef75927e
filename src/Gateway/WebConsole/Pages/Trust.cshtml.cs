using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Gateway.Application;
using Microsoft.AspNetCore.Mvc;

namespace EphemeralOrleans.Gateway.WebConsole.Pages;

/// <summary>The tailnet's trust policies (workload identity): create, list, delete.</summary>
public sealed class TrustModel(ControlPlane controlPlane) : ConsolePage(controlPlane)
{
    public sealed class NewPolicy
    {
        public string? Issuer { get; set; }
        public string? Audiences { get; set; }
        public string? Subject { get; set; }

        /// <summary>One <c>name=value</c> a line.</summary>
        public string? Claims { get; set; }
        public string? Tags { get; set; }
        public bool NeedsApproval { get; set; }
        public string? Description { get; set; }
    }

    [BindProperty]
    public NewPolicy Input { get; set; } = new();

    public IReadOnlyList<TrustPolicy> Policies { get; private set; } = [];

    public string? CreateError { get; private set; }

    public async Task OnGetAsync() => await LoadAsync();

    public async Task<IActionResult> OnPostCreateAsync()
    {
        var claims = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in (Input.Claims ?? "").Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var pair = line.Split('=', 2, StringSplitOptions.TrimEntries);
            if (pair.Length != 2 || pair[0].Length == 0)
            {
                CreateError = $"Each claim is name=value on a line of its own, not '{line}'.";
                break;
            }

            claims[pair[0]] = pair[1];
        }

        if (CreateError is null)
        {
            try
            {
                await ControlPlane.PutTrustPolicyAsync(Tailnet, null, new TrustPolicyRequest(Input.Issuer,
                    (Input.Audiences ?? "").Split([',', ' ', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries), Input.Subject?.Trim(), claims,
                    (Input.Tags ?? "").Split([',', ' '], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries), Input.NeedsApproval,
                    string.IsNullOrWhiteSpace(Input.Description) ? null : Input.Description.Trim()));
                return Redirect(Link("trust"));
            }
            catch (ControlPlaneException exception)
            {
                CreateError = exception.Failure.Detail;
            }
        }

        Response.StatusCode = StatusCodes.Status400BadRequest;
        await LoadAsync();
        return Page();
    }

    public Task<IActionResult> OnPostDeleteAsync(string id) => ChangeAsync(async () =>
    {
        await ControlPlane.DeleteTrustPolicyAsync(Tailnet, id);
        return $"Deleted trust policy {id}. Devices it registered stay.";
    }, Link("trust"));

    private async Task LoadAsync() => Policies = (await ControlPlane.ListTrustPoliciesAsync(Tailnet)).OrderByDescending(p => p.CreatedAt).ToArray();
}
