using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Gateway.Application;
using Microsoft.AspNetCore.Mvc;

namespace EphemeralOrleans.Gateway.WebConsole.Pages;

/// <summary>The tailnet's audit log (newest first, filtered, refreshed live by the page's script) and its webhook
/// endpoints: create (the secret shown once), their delivery state, resume a paused one, delete.</summary>
public sealed class EventsModel(ControlPlane controlPlane, TimeProvider time) : ConsolePage(controlPlane)
{
    public const int MaxRows = 200;

    public sealed class NewWebhook
    {
        public string? Url { get; set; }

        /// <summary>Comma- or space-separated types or families; empty for all.</summary>
        public string? Types { get; set; }
        public string? Description { get; set; }
    }

    [BindProperty(SupportsGet = true, Name = "type")]
    public string? TypeFilter { get; set; }

    [BindProperty(SupportsGet = true, Name = "node")]
    public string? NodeFilter { get; set; }

    [BindProperty]
    public NewWebhook Input { get; set; } = new();

    public IReadOnlyList<AuditEvent> Events { get; private set; } = [];

    public IReadOnlyList<WebhookInfo> Webhooks { get; private set; } = [];

    public CreatedWebhook? Created { get; private set; }

    public string? CreateError { get; private set; }

    public string? FilterError { get; private set; }

    public DateTimeOffset Now { get; private set; }

    /// <summary>The filters the type list offers: every family, then every type.</summary>
    public static IEnumerable<string> TypeChoices =>
        EventTypes.All.Select(t => t[..(t.IndexOf('.') + 1)] + "*").Distinct().Order(StringComparer.Ordinal)
            .Concat(EventTypes.All.Order(StringComparer.Ordinal));

    public string FilterQuery => $"type={Uri.EscapeDataString(TypeFilter ?? "")}&node={Uri.EscapeDataString(NodeFilter ?? "")}";

    public async Task<IActionResult> OnGetAsync()
    {
        await LoadAsync();
        return Page();
    }

    /// <summary>The live part of the page alone, fetched by the script.</summary>
    public async Task<IActionResult> OnGetRowsAsync()
    {
        await LoadAsync();
        return Partial("_EventRows", this);
    }

    public async Task<IActionResult> OnPostCreateWebhookAsync()
    {
        try
        {
            Created = await ControlPlane.CreateWebhookAsync(Tailnet, new CreateWebhookRequest(Input.Url?.Trim(),
                (Input.Types ?? "").Split([',', ' '], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                string.IsNullOrWhiteSpace(Input.Description) ? null : Input.Description.Trim()));
            ModelState.Clear();
            Input = new NewWebhook();
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

    public Task<IActionResult> OnPostResumeWebhookAsync(string id) => ChangeAsync(async () =>
    {
        var webhook = await ControlPlane.ResumeWebhookAsync(Tailnet, id);
        return $"Resumed webhook {webhook.Id}: delivery goes on after event {webhook.Cursor}.";
    }, Link("events", FilterQuery));

    public Task<IActionResult> OnPostDeleteWebhookAsync(string id) => ChangeAsync(async () =>
    {
        await ControlPlane.DeleteWebhookAsync(Tailnet, id);
        return $"Deleted webhook {id}.";
    }, Link("events", FilterQuery));

    /// <summary>An event's data as <c>name=value</c> pairs.</summary>
    public static string Details(AuditEvent e)
    {
        using var data = System.Text.Json.JsonDocument.Parse(e.Data);
        return string.Join("  ", data.RootElement.EnumerateObject()
            .Where(p => p.Value.ValueKind is not System.Text.Json.JsonValueKind.Null)
            .Select(p => $"{p.Name}={(p.Value.ValueKind == System.Text.Json.JsonValueKind.String ? p.Value.GetString() : p.Value.GetRawText())}"));
    }

    private async Task LoadAsync()
    {
        Now = time.GetUtcNow();
        Webhooks = await ControlPlane.ListWebhooksAsync(Tailnet);
        try
        {
            Events = (await ControlPlane.ListEventsAsync(Tailnet, null, TypeFilter, NodeFilter?.Trim(), MaxRows, newest: true)).Events;
        }
        catch (ControlPlaneException exception)
        {
            FilterError = exception.Failure.Detail;
        }
    }
}
