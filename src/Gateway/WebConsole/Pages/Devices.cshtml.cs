using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Gateway.Application;
using Microsoft.AspNetCore.Mvc;

namespace EphemeralOrleans.Gateway.WebConsole.Pages;

/// <summary>The tailnet's devices, filtered, refreshed live by the page's script; approve and remove.</summary>
public sealed class DevicesModel(ControlPlane controlPlane, TimeProvider time) : ConsolePage(controlPlane)
{
    /// <summary>A page this long stays quick to render and to refresh every two seconds; filters narrow a larger fleet.</summary>
    public const int MaxRows = 500;

    [BindProperty(SupportsGet = true, Name = "tag")]
    public string? Tag { get; set; }

    /// <summary><c>yes</c>, <c>no</c>, or empty for either.</summary>
    [BindProperty(SupportsGet = true, Name = "ephemeral")]
    public string? EphemeralFilter { get; set; }

    /// <summary><c>yes</c>, <c>no</c>, or empty for either.</summary>
    [BindProperty(SupportsGet = true, Name = "online")]
    public string? OnlineFilter { get; set; }

    public IReadOnlyList<NodeView> Nodes { get; private set; } = [];

    public int Matching { get; private set; }

    public int Total { get; private set; }

    public int OnlineCount { get; private set; }

    public int AwaitingApproval { get; private set; }

    public IReadOnlyList<string> AllTags { get; private set; } = [];

    public bool DeviceApproval { get; private set; }

    public DateTimeOffset Now { get; private set; }

    public string FilterQuery =>
        $"tag={Uri.EscapeDataString(Tag ?? "")}&ephemeral={Uri.EscapeDataString(EphemeralFilter ?? "")}&online={Uri.EscapeDataString(OnlineFilter ?? "")}";

    public async Task<IActionResult> OnGetAsync()
    {
        await LoadAsync();
        return Page();
    }

    /// <summary>The live part of the page alone, fetched by the script.</summary>
    public async Task<IActionResult> OnGetRowsAsync()
    {
        await LoadAsync();
        return Partial("_DeviceRows", this);
    }

    public Task<IActionResult> OnPostApproveAsync(string id) => ChangeAsync(async () =>
    {
        var node = await ControlPlane.ApproveNodeAsync(Tailnet, id);
        return $"Approved {node.Record.Name}.";
    }, Link("devices", FilterQuery));

    public Task<IActionResult> OnPostRemoveAsync(string id) => ChangeAsync(async () =>
    {
        var node = await ControlPlane.DeleteNodeAsync(Tailnet, id);
        return $"Removed {node.Record.Name}; its addresses are released.";
    }, Link("devices", FilterQuery));

    public Task<IActionResult> OnPostApprovalAsync(bool enabled) => ChangeAsync(async () =>
    {
        await ControlPlane.UpdateSettingsAsync(Tailnet, enabled);
        return enabled
            ? "Device approval is on: devices registered with keys that are not pre-authorized wait for approval."
            : "Device approval is off.";
    }, Link("devices", FilterQuery));

    private async Task LoadAsync()
    {
        Now = time.GetUtcNow();
        var settings = ControlPlane.GetSettingsAsync(Tailnet);
        var all = (await ControlPlane.ListNodesAsync(Tailnet)).Select(NodeView.From).ToArray();
        DeviceApproval = (await settings).DeviceApproval;
        Total = all.Length;
        OnlineCount = all.Count(n => n.Online);
        AwaitingApproval = all.Count(n => !n.Authorized);
        AllTags = all.SelectMany(n => n.Tags).Distinct().Order(StringComparer.Ordinal).ToArray();
        var matching = all
            .Where(n => string.IsNullOrEmpty(Tag) || n.Tags.Contains(Tag))
            .Where(n => Matches(EphemeralFilter, n.Ephemeral))
            .Where(n => Matches(OnlineFilter, n.Online))
            .OrderByDescending(n => n.Created)
            .ThenBy(n => n.Name, StringComparer.Ordinal)
            .ToArray();
        Matching = matching.Length;
        Nodes = matching.Take(MaxRows).ToArray();
    }

    private static bool Matches(string? filter, bool value) => filter switch
    {
        "yes" => value,
        "no" => !value,
        _ => true,
    };
}
