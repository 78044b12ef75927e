using System.Text.Json;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Gateway.Application;
using EphemeralOrleans.Gateway.Map;
using EphemeralOrleans.Gateway.Telemetry;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.Rendering;
using Microsoft.AspNetCore.Mvc.ViewEngines;
using Microsoft.AspNetCore.Mvc.ViewFeatures;
using Microsoft.Extensions.Options;

namespace EphemeralOrleans.Gateway.WebConsole.Pages;

/// <summary>One row of the device list: the page (tailnet, filters, clock) and the node.</summary>
public sealed record DeviceRow(DevicesModel Page, NodeView Node);

/// <summary>The tailnet's devices, filtered, kept live by server push (<see cref="OnGetLiveAsync"/>); approve and remove.</summary>
public sealed class DevicesModel(ControlPlane controlPlane, TimeProvider time) : ConsolePage(controlPlane)
{
    /// <summary>A page this long stays quick to render; filters narrow a larger fleet.</summary>
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

    /// <summary>
    /// The live list by server push (<c>text/event-stream</c>): <c>reset</c> with the rendered list when the stream
    /// starts (and after a resync), then per batch of registry changes a <c>row</c> (rendered) for each changed device
    /// the filters pass, a <c>remove</c> for each one removed or filtered out, and the <c>counts</c>; <c>signedout</c>
    /// when the session ended meanwhile. The gateway's feed of the tailnet pushes the batches: nothing is polled.
    /// </summary>
    public async Task<IActionResult> OnGetLiveAsync([FromServices] MapHub hub, [FromServices] ICompositeViewEngine views,
        [FromServices] ConsoleSessionStore sessions, [FromServices] IOptions<ConsoleOptions> console)
    {
        Response.ContentType = "text/event-stream";
        Response.Headers["X-Accel-Buffering"] = "no"; // a proxy must not hold events back
        // Ended by the browser leaving, or by this handler (signed out): the watch is cancelled before it is disposed.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(HttpContext.RequestAborted);
        var aborted = stop.Token;
        var updates = hub.WatchAsync(Tailnet, aborted).GetAsyncEnumerator(aborted);
        var next = updates.MoveNextAsync().AsTask();
        try
        {
            while (true)
            {
                if (await Task.WhenAny(next, Task.Delay(console.Value.LiveSessionCheck, aborted)) != next)
                {
                    aborted.ThrowIfCancellationRequested();
                    if (!await sessions.StandsAsync(User))
                    {
                        await SendAsync("signedout", "{}");
                        break;
                    }

                    continue;
                }

                if (!await next)
                {
                    break; // fell behind: the page reconnects and starts over
                }

                var update = updates.Current;
                next = updates.MoveNextAsync().AsTask();
                Now = time.GetUtcNow();
                if (update.IsReset)
                {
                    DeviceApproval = (await ControlPlane.GetSettingsAsync(Tailnet)).DeviceApproval;
                    Load(update.All!.Select(NodeView.From));
                    await SendAsync("reset", JsonSerializer.Serialize(new { html = await RenderAsync(views, "_DeviceRows", this) }));
                    GatewayMetrics.ConsoleDeviceListUpdate("reset");
                    continue;
                }

                foreach (var node in update.Changed.Select(NodeView.From))
                {
                    await (Passes(node)
                        ? SendAsync("row", JsonSerializer.Serialize(new { id = node.Id, html = await RenderAsync(views, "_DeviceRow", new DeviceRow(this, node)) }))
                        : SendAsync("remove", JsonSerializer.Serialize(new { id = node.Id })));
                }

                foreach (var id in update.Removed)
                {
                    await SendAsync("remove", JsonSerializer.Serialize(new { id }));
                }

                await SendAsync("counts", JsonSerializer.Serialize(new { total = update.Counts.Total, online = update.Counts.Online, awaiting = update.Counts.AwaitingApproval }));
                GatewayMetrics.ConsoleDeviceListUpdate("delta");
            }
        }
        catch (Exception exception) when (exception is OperationCanceledException or IOException && aborted.IsCancellationRequested)
        {
            // The browser left.
        }
        finally
        {
            await stop.CancelAsync();
            // Only to let the pending step finish before the watch is disposed: whatever it failed with has been
            // handled above, or is already on its way out of this handler.
            await next.ContinueWith(step => _ = step.Exception, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            await updates.DisposeAsync();
        }

        return new EmptyResult();

        async Task SendAsync(string type, string json)
        {
            await Response.WriteAsync($"event: {type}\ndata: {json}\n\n", aborted);
            await Response.Body.FlushAsync(aborted);
        }
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
        Load(all);
    }

    private void Load(IEnumerable<NodeView> nodes)
    {
        var all = nodes.ToArray();
        Total = all.Length;
        OnlineCount = all.Count(n => n.Online);
        AwaitingApproval = all.Count(n => !n.Authorized);
        AllTags = all.SelectMany(n => n.Tags).Distinct().Order(StringComparer.Ordinal).ToArray();
        var matching = all
            .Where(Passes)
            .OrderByDescending(n => n.Created)
            .ThenBy(n => n.Name, StringComparer.Ordinal)
            .ToArray();
        Matching = matching.Length;
        Nodes = matching.Take(MaxRows).ToArray();
    }

    private bool Passes(NodeView node) =>
        (string.IsNullOrEmpty(Tag) || node.Tags.Contains(Tag)) && Matches(EphemeralFilter, node.Ephemeral) && Matches(OnlineFilter, node.Online);

    /// <summary>A partial rendered to text, for the live list's events.</summary>
    private async Task<string> RenderAsync(ICompositeViewEngine views, string partial, object model)
    {
        var view = views.FindView(PageContext, partial, isMainPage: false).View
            ?? throw new InvalidOperationException($"The console's partial {partial} was not found.");
        await using var writer = new StringWriter();
        var context = new ViewContext(PageContext, view, new ViewDataDictionary<object>(ViewData, model), TempData, writer, new HtmlHelperOptions());
        await view.RenderAsync(context);
        return writer.ToString();
    }

    private static bool Matches(string? filter, bool value) => filter switch
    {
        "yes" => value,
        "no" => !value,
        _ => true,
    };
}
