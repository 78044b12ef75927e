using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;

namespace EphemeralOrleans.Agent.Control;

/// <summary>The admin API over HTTP, as documented in docs/api.md: the CLI's <c>--json</c> prints its objects as they
/// come, so a script sees exactly what the API returns. Refusals become <see cref="AgentFailure"/>s with the problem's
/// code; a node or key can be named by id or by name (a key's name is its description).</summary>
public sealed class AdminClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly string _tailnet;

    public AdminClient(Uri loginServer, GatewayTrust trust, string adminKey, string tailnet)
    {
        _http = new HttpClient(trust.CreateHandler()) { BaseAddress = loginServer, Timeout = TimeSpan.FromSeconds(30) };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", adminKey);
        _tailnet = Uri.EscapeDataString(tailnet);
    }

    private string Tailnet => $"/api/v1/tailnets/{_tailnet}";

    public Task<JsonElement> CreateKeyAsync(object body, CancellationToken cancellationToken) =>
        HttpControlClient.SendAsync(() => _http.PostAsJsonAsync($"{Tailnet}/keys", body, cancellationToken), cancellationToken);

    public Task<JsonElement> ListKeysAsync(CancellationToken cancellationToken) =>
        HttpControlClient.SendAsync(() => _http.GetAsync($"{Tailnet}/keys", cancellationToken), cancellationToken);

    public Task<JsonElement> ListNodesAsync(CancellationToken cancellationToken) =>
        HttpControlClient.SendAsync(() => _http.GetAsync($"{Tailnet}/nodes", cancellationToken), cancellationToken);

    public async Task RevokeKeyAsync(string id, CancellationToken cancellationToken) =>
        (await HttpControlClient.SendRawAsync(() => _http.DeleteAsync($"{Tailnet}/keys/{Uri.EscapeDataString(id)}", cancellationToken), cancellationToken)).Dispose();

    public async Task DeleteNodeAsync(string id, CancellationToken cancellationToken) =>
        (await HttpControlClient.SendRawAsync(() => _http.DeleteAsync($"{Tailnet}/nodes/{Uri.EscapeDataString(id)}", cancellationToken), cancellationToken)).Dispose();

    public async Task ExpireNodeAsync(string id, CancellationToken cancellationToken) =>
        (await HttpControlClient.SendRawAsync(() => _http.PostAsync($"{Tailnet}/nodes/{Uri.EscapeDataString(id)}/expire", null, cancellationToken), cancellationToken)).Dispose();

    public Task<JsonElement> RenameNodeAsync(string id, string name, CancellationToken cancellationToken) =>
        HttpControlClient.SendAsync(() => _http.PostAsJsonAsync($"{Tailnet}/nodes/{Uri.EscapeDataString(id)}/rename", new { name }, cancellationToken), cancellationToken);

    public Task<JsonElement> ApproveNodeAsync(string id, CancellationToken cancellationToken) =>
        HttpControlClient.SendAsync(() => _http.PostAsync($"{Tailnet}/nodes/{Uri.EscapeDataString(id)}/approve", null, cancellationToken), cancellationToken);

    public Task<JsonElement> CreateTrustPolicyAsync(object body, CancellationToken cancellationToken) =>
        HttpControlClient.SendAsync(() => _http.PostAsJsonAsync($"{Tailnet}/trust-policies", body, cancellationToken), cancellationToken);

    public Task<JsonElement> ListTrustPoliciesAsync(CancellationToken cancellationToken) =>
        HttpControlClient.SendAsync(() => _http.GetAsync($"{Tailnet}/trust-policies", cancellationToken), cancellationToken);

    public async Task DeleteTrustPolicyAsync(string id, CancellationToken cancellationToken) =>
        (await HttpControlClient.SendRawAsync(() => _http.DeleteAsync($"{Tailnet}/trust-policies/{Uri.EscapeDataString(id)}", cancellationToken), cancellationToken)).Dispose();

    /// <summary>The trust policy whose id or description is <paramref name="idOrName"/>.</summary>
    public async Task<JsonElement> FindTrustPolicyAsync(string idOrName, CancellationToken cancellationToken) =>
        Single((await ListTrustPoliciesAsync(cancellationToken)).GetProperty("trustPolicies"), idOrName, "description", "trust policy");

    /// <summary>The node whose id or name is <paramref name="idOrName"/>.</summary>
    public async Task<JsonElement> FindNodeAsync(string idOrName, CancellationToken cancellationToken) =>
        Single((await ListNodesAsync(cancellationToken)).GetProperty("nodes"), idOrName, "name", "node");

    /// <summary>The key whose id or description is <paramref name="idOrName"/>.</summary>
    public async Task<JsonElement> FindKeyAsync(string idOrName, CancellationToken cancellationToken) =>
        Single((await ListKeysAsync(cancellationToken)).GetProperty("keys"), idOrName, "description", "key");

    /// <summary>A page of the audit log: <c>{"events": [...], "next": "..."}</c>; with <c>adminLog</c>, of the admin log
    /// (uses of the admin key) instead of the tailnet's.</summary>
    public Task<JsonElement> ListEventsAsync(string? since, string? type, string? node, int limit, bool adminLog, CancellationToken cancellationToken)
    {
        var query = $"limit={limit}";
        foreach (var (name, value) in new[] { ("since", since), ("type", type), ("node", node) })
        {
            if (!string.IsNullOrEmpty(value))
            {
                query += $"&{name}={Uri.EscapeDataString(value)}";
            }
        }

        var path = adminLog ? "/api/v1/admin/events" : $"{Tailnet}/events";
        return HttpControlClient.SendAsync(() => _http.GetAsync($"{path}?{query}", cancellationToken), cancellationToken);
    }

    public void Dispose() => _http.Dispose();

    private static JsonElement Single(JsonElement items, string idOrName, string nameProperty, string what)
    {
        var byId = items.EnumerateArray().Where(i => i.GetProperty("id").GetString() == idOrName).ToArray();
        var byName = items.EnumerateArray().Where(i => i.TryGetProperty(nameProperty, out var n) && n.GetString() == idOrName).ToArray();
        return (byId, byName) switch
        {
            ([var one], _) => one,
            ([], [var one]) => one,
            ([], []) => throw new AgentFailure("not_found", $"No {what} has the id or {nameProperty} '{idOrName}'.", transient: false),
            _ => throw new AgentFailure("ambiguous", $"{byName.Length} {what}s have the {nameProperty} '{idOrName}'; name one by its id.", transient: false),
        };
    }
}
