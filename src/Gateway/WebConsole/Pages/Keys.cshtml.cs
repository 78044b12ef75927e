using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Gateway.Application;
using Microsoft.AspNetCore.Mvc;

namespace EphemeralOrleans.Gateway.WebConsole.Pages;

/// <summary>The tailnet's auth keys: create (the secret shown once), list, revoke.</summary>
public sealed class KeysModel(ControlPlane controlPlane, TimeProvider time) : ConsolePage(controlPlane)
{
    /// <summary>Expiry choices, in seconds; the first is the default.</summary>
    public static readonly (long Seconds, string Label)[] Expiries =
    [
        (86_400, "1 day"), (3_600, "1 hour"), (7 * 86_400, "7 days"), (30 * 86_400, "30 days"), (90 * 86_400, "90 days"),
    ];

    public sealed class NewKey
    {
        public string? Description { get; set; }
        public string? Tags { get; set; }
        public bool Reusable { get; set; }
        public bool Ephemeral { get; set; } = true;
        public bool Preauthorized { get; set; } = true;
        public long ExpirySeconds { get; set; } = Expiries[0].Seconds;
    }

    [BindProperty]
    public NewKey Input { get; set; } = new();

    public IReadOnlyList<AuthKeyInfo> Keys { get; private set; } = [];

    /// <summary>Set only in the response to the request that created the key: the secret is never kept to show again.</summary>
    public CreatedAuthKey? Created { get; private set; }

    public string? CreateError { get; private set; }

    public DateTimeOffset Now { get; private set; }

    public async Task OnGetAsync() => await LoadAsync();

    public async Task<IActionResult> OnPostCreateAsync()
    {
        try
        {
            var tags = (Input.Tags ?? "").Split([',', ' '], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var description = string.IsNullOrWhiteSpace(Input.Description) ? null : Input.Description.Trim();
            Created = await ControlPlane.CreateKeyAsync(Tailnet,
                new CreateKeyRequest(Input.Reusable, Input.Ephemeral, Input.Preauthorized, tags, Input.ExpirySeconds, description));
            // A fresh form for the next key (the posted values would otherwise be shown again).
            ModelState.Clear();
            Input = new NewKey();
            // Rendered here rather than redirected to, so that the secret travels once, in this response only.
        }
        catch (ControlPlaneException exception)
        {
            CreateError = exception.Failure.Detail;
            Response.StatusCode = StatusCodes.Status400BadRequest;
        }

        await LoadAsync();
        return Page();
    }

    public Task<IActionResult> OnPostRevokeAsync(string id) => ChangeAsync(async () =>
    {
        await ControlPlane.RevokeKeyAsync(Tailnet, id);
        return $"Revoked key {id}. Devices it registered stay.";
    }, Link("keys"));

    public static string State(AuthKeyInfo key, DateTimeOffset now) =>
        key.Revoked ? "Revoked"
        : key.Expires is { } expires && expires <= now ? "Expired"
        : !key.Reusable && key.Uses > 0 ? "Used"
        : "Active";

    private async Task LoadAsync()
    {
        Now = time.GetUtcNow();
        Keys = (await ControlPlane.ListKeysAsync(Tailnet)).OrderByDescending(k => k.Created).ToArray();
    }
}
