using System.Text.Json;
using EphemeralOrleans.Agent.Control;

namespace EphemeralOrleans.Agent.Cli;

/// <summary><c>keys …</c> and <c>nodes …</c>: the admin API (<see cref="AdminClient"/>). Lists have a header and say
/// states in words; <c>--json</c> prints the API's objects as they are. Nodes are named by id or name, keys by id or
/// description.</summary>
public sealed class AdminCommands(Uri loginServer, GatewayTrust trust, string adminKey, string tailnet, bool json, bool ipv6 = false)
{
    public Task<int> CreateKeyAsync(bool reusable, bool ephemeral, bool preauthorized, string[] tags, TimeSpan? expiry, string? description) =>
        CallAsync(async (admin, ct) =>
        {
            var created = await admin.CreateKeyAsync(new
            {
                reusable, ephemeral, preauthorized, tags, description,
                expirySeconds = expiry is { } e ? (long?)Math.Ceiling(e.TotalSeconds) : null,
            }, ct);
            // The key alone on stdout: KEY=$(eo keys create …) works.
            Print(created, created.GetProperty("key").GetString()!);
        });

    public Task<int> ListKeysAsync() => CallAsync(async (admin, ct) =>
    {
        var keys = await admin.ListKeysAsync(ct);
        Print(keys, Render.Table(["ID", "STATE", "USES", "TYPE", "TAGS", "EXPIRES", "DESCRIPTION"],
            keys.GetProperty("keys").EnumerateArray().Select(k => new[]
            {
                k.GetProperty("id").GetString()!,
                Render.KeyState(k),
                k.GetProperty("uses").GetInt32().ToString(System.Globalization.CultureInfo.InvariantCulture),
                string.Join(' ', new[] { k.GetProperty("reusable").GetBoolean() ? "reusable" : "single-use", k.GetProperty("ephemeral").GetBoolean() ? "ephemeral" : "", k.GetProperty("preauthorized").GetBoolean() ? "preauthorized" : "" }.Where(w => w.Length > 0)),
                Render.Tags(k),
                k.TryGetProperty("expires", out var expires) && expires.ValueKind == JsonValueKind.String ? expires.GetDateTimeOffset().ToString("yyyy-MM-dd HH:mm'Z'", System.Globalization.CultureInfo.InvariantCulture) : "never",
                k.TryGetProperty("description", out var d) && d.GetString() is { Length: > 0 } text ? text : "-",
            })));
    });

    public Task<int> RevokeKeyAsync(string idOrDescription) => CallAsync(async (admin, ct) =>
    {
        var key = await admin.FindKeyAsync(idOrDescription, ct);
        var id = key.GetProperty("id").GetString()!;
        await admin.RevokeKeyAsync(id, ct);
        Print(new { revoked = id }, $"revoked key {id}");
    });

    public Task<int> ListNodesAsync() => CallAsync(async (admin, ct) =>
    {
        var nodes = await admin.ListNodesAsync(ct);
        var header = ipv6 ? new[] { "NAME", "IPV4", "IPV6", "TAGS", "STATE", "KIND", "ID" } : ["NAME", "IPV4", "TAGS", "STATE", "KIND", "ID"];
        Print(nodes, Render.Table(header, nodes.GetProperty("nodes").EnumerateArray()
            .OrderBy(n => n.GetProperty("name").GetString(), StringComparer.Ordinal)
            .Select(n => new[]
            {
                n.GetProperty("name").GetString()!,
                n.GetProperty("ipv4").GetString()!,
                ipv6 ? n.GetProperty("ipv6").GetString()! : null,
                Render.Tags(n),
                Render.NodeState(n),
                n.GetProperty("ephemeral").GetBoolean() ? "ephemeral" : "-",
                n.GetProperty("id").GetString()!,
            }.OfType<string>().ToArray())));
    });

    public Task<int> DeleteNodeAsync(string idOrName) => CallAsync(async (admin, ct) =>
    {
        var node = await admin.FindNodeAsync(idOrName, ct);
        await admin.DeleteNodeAsync(node.GetProperty("id").GetString()!, ct);
        Print(new { deleted = node.GetProperty("id").GetString() }, $"deleted {node.GetProperty("name").GetString()} ({node.GetProperty("id").GetString()})");
    });

    public Task<int> ExpireNodeAsync(string idOrName) => CallAsync(async (admin, ct) =>
    {
        var node = await admin.FindNodeAsync(idOrName, ct);
        await admin.ExpireNodeAsync(node.GetProperty("id").GetString()!, ct);
        Print(new { expired = node.GetProperty("id").GetString() }, $"expired {node.GetProperty("name").GetString()} ({node.GetProperty("id").GetString()})"
            + (node.GetProperty("ephemeral").GetBoolean() ? ": removed (ephemeral)" : ": logged out"));
    });

    public Task<int> RenameNodeAsync(string idOrName, string name) => CallAsync(async (admin, ct) =>
    {
        var node = await admin.FindNodeAsync(idOrName, ct);
        var renamed = await admin.RenameNodeAsync(node.GetProperty("id").GetString()!, name, ct);
        Print(renamed, $"renamed {node.GetProperty("name").GetString()} to {renamed.GetProperty("name").GetString()} ({renamed.GetProperty("id").GetString()})");
    });

    public Task<int> ApproveNodeAsync(string idOrName) => CallAsync(async (admin, ct) =>
    {
        var node = await admin.FindNodeAsync(idOrName, ct);
        var approved = await admin.ApproveNodeAsync(node.GetProperty("id").GetString()!, ct);
        Print(approved, $"approved {approved.GetProperty("name").GetString()} ({approved.GetProperty("id").GetString()})");
    });

    public Task<int> CreateTrustPolicyAsync(string issuer, string[] audiences, string subject, IReadOnlyDictionary<string, string> claims, string[] tags,
        bool needsApproval, string? description) => CallAsync(async (admin, ct) =>
    {
        var created = await admin.CreateTrustPolicyAsync(new { issuer, audiences, subject, claims, tags, needsApproval, description }, ct);
        Print(created, created.GetProperty("id").GetString()!);
    });

    public Task<int> ListTrustPoliciesAsync() => CallAsync(async (admin, ct) =>
    {
        var policies = await admin.ListTrustPoliciesAsync(ct);
        Print(policies, Render.Table(["ID", "ISSUER", "AUDIENCES", "SUBJECT", "CLAIMS", "TAGS", "APPROVAL", "DESCRIPTION"],
            policies.GetProperty("trustPolicies").EnumerateArray().Select(p => new[]
            {
                p.GetProperty("id").GetString()!,
                p.GetProperty("issuer").GetString()!,
                string.Join(',', p.GetProperty("audiences").EnumerateArray().Select(a => a.GetString())),
                p.GetProperty("subject").GetString()!,
                p.GetProperty("claims").EnumerateObject().Any() ? string.Join(',', p.GetProperty("claims").EnumerateObject().Select(c => $"{c.Name}={c.Value.GetString()}")) : "-",
                Render.Tags(p),
                p.GetProperty("needsApproval").GetBoolean() ? "needed" : "-",
                p.TryGetProperty("description", out var d) && d.GetString() is { Length: > 0 } text ? text : "-",
            })));
    });

    public Task<int> DeleteTrustPolicyAsync(string idOrDescription) => CallAsync(async (admin, ct) =>
    {
        var policy = await admin.FindTrustPolicyAsync(idOrDescription, ct);
        var id = policy.GetProperty("id").GetString()!;
        await admin.DeleteTrustPolicyAsync(id, ct);
        Print(new { deleted = id }, $"deleted trust policy {id}; nodes it registered stay");
    });

    /// <summary>The audit log from <paramref name="since"/> (up to <paramref name="limit"/> events), one line each
    /// (<c>--json</c>: one JSON object per line); with <paramref name="follow"/>, then every new event as it comes, until
    /// stopped (exit 0). A gateway out of reach while following is waited for.</summary>
    public async Task<int> EventsAsync(string? since, string? type, string? node, int limit, bool follow, bool adminLog, TimeSpan interval, CancellationToken stopping)
    {
        using var admin = new AdminClient(loginServer, trust, adminKey, tailnet);
        var cursor = since;
        var left = follow ? long.MaxValue : limit;
        var header = false;
        try
        {
            while (true)
            {
                var asked = (int)Math.Min(1000, Math.Max(1, left));
                JsonElement page;
                try
                {
                    using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stopping);
                    timeout.CancelAfter(TimeSpan.FromSeconds(30));
                    page = await admin.ListEventsAsync(cursor, type, node, asked, adminLog, timeout.Token);
                }
                catch (AgentFailure failure) when (follow && failure.Transient)
                {
                    Console.Error.WriteLine($"warning: {failure.Message}; trying again");
                    await Task.Delay(interval * 5, stopping);
                    continue;
                }

                var events = page.GetProperty("events").EnumerateArray().ToArray();
                foreach (var e in events)
                {
                    if (!json && !header)
                    {
                        Console.Out.WriteLine(Render.Row(["ID", "TIME", "TYPE", "ACTOR", "TARGET", "DETAILS"], EventWidths));
                        header = true;
                    }

                    Console.Out.WriteLine(json ? JsonSerializer.Serialize(e, AgentOutput.Json) : Render.Row(Render.EventCells(e), EventWidths));
                }

                Console.Out.Flush();
                cursor = page.GetProperty("next").GetString();
                left -= events.Length;
                if (!follow && (left <= 0 || events.Length < asked))
                {
                    return ExitCodes.Ok;
                }

                if (events.Length < asked)
                {
                    await Task.Delay(interval, stopping);
                }
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            return ExitCodes.Ok;
        }
        catch (AgentFailure failure)
        {
            Console.Error.WriteLine($"error: {failure.FlagMessage} ({failure.Code})");
            return failure.ExitCode;
        }
    }

    private static readonly int[] EventWidths = [6, 20, 19, 24, 24, 0];

    private void Print(object data, string text) => Console.Out.WriteLine(json ? JsonSerializer.Serialize(data, AgentOutput.Json) : text);

    private async Task<int> CallAsync(Func<AdminClient, CancellationToken, Task> call)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var admin = new AdminClient(loginServer, trust, adminKey, tailnet);
        try
        {
            await call(admin, timeout.Token);
            return ExitCodes.Ok;
        }
        catch (AgentFailure failure)
        {
            Console.Error.WriteLine($"error: {failure.FlagMessage} ({failure.Code})");
            return failure.ExitCode;
        }
    }
}
