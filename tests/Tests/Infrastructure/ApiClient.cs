using System.Net;
using System.Security.Cryptography;
using System.Text.Json;
using EphemeralOrleans.Protocol;

namespace EphemeralOrleans.Tests.Infrastructure;

/// <summary>The two ways in: HTTP/1.1 JSON and gRPC over HTTP/2.</summary>
public enum Transport
{
    Http,
    Grpc,
}

/// <summary>An answer in transport-neutral terms: the HTTP status (gRPC codes mapped to their HTTP twins), the problem
/// code of a refusal, and the body as JSON in the HTTP API's shape.</summary>
public sealed record Reply(HttpStatusCode Status, string? Code, JsonElement Body, string? Detail = null);

/// <summary>
/// The agent and admin APIs as tests use them, with one implementation per transport, so that a test body written once
/// holds over both. Helpers without <c>Try</c> fail the test on a refusal.
/// </summary>
public abstract class ApiClient : IDisposable
{
    public const string AdminKey = "eo-admin-test-7Qk2Vx9LmP4rT8wZ3nB6";

    public abstract Transport Transport { get; }

    public static string NewNodeKey() => "nodekey:" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));

    public abstract Task<Reply> TryCreateKeyAsync(bool reusable, bool ephemeral, bool preauthorized, string[] tags, long? expirySeconds, string tailnet);

    public async Task<JsonElement> CreateKeyAsync(bool reusable = true, bool ephemeral = true, bool preauthorized = true,
        string[]? tags = null, long? expirySeconds = null, string tailnet = "-")
    {
        var reply = await TryCreateKeyAsync(reusable, ephemeral, preauthorized, tags ?? [], expirySeconds, tailnet);
        Assert.True(reply.Status == HttpStatusCode.Created, $"create key: {reply.Status} {reply.Code}");
        return reply.Body;
    }

    /// <summary>Registers; <paramref name="nodeToken"/> goes as the bearer credential, <paramref name="proof"/> in the body.</summary>
    public abstract Task<Reply> TryRegisterAsync(string authKey, string? nodeKey = null, string hostname = "host", bool ephemeral = false,
        RegistrationProof? proof = null, string? nodeToken = null);

    /// <summary>The gateways' control key from the discovery call (<c>controlkey:…</c>).</summary>
    public abstract Task<string> ControlKeyAsync();

    /// <summary>Registers <paramref name="device"/> as its agent does: with a fresh proof of possession.</summary>
    public async Task<Reply> TryRegisterDeviceAsync(string authKey, TestDevice device, string hostname = "host", bool ephemeral = false) =>
        await TryRegisterAsync(authKey, device.NodeKey, hostname, ephemeral, device.Prove(await ControlKeyAsync(), authKey, hostname, ephemeral));

    /// <summary>Registers and returns (node, token), failing the test on any refusal.</summary>
    public async Task<(JsonElement Node, string Token)> RegisterAsync(string authKey, string? nodeKey = null, string hostname = "host", bool ephemeral = false)
    {
        var reply = await TryRegisterAsync(authKey, nodeKey ?? NewNodeKey(), hostname, ephemeral);
        Assert.True(reply.Status == HttpStatusCode.OK, $"register: {reply.Status} {reply.Code}");
        return (reply.Body.GetProperty("node").Clone(), reply.Body.Str("nodeToken"));
    }

    /// <summary>Registers <paramref name="device"/> with a proof and returns (node, token), failing the test on any refusal.</summary>
    public async Task<(JsonElement Node, string Token)> RegisterDeviceAsync(string authKey, TestDevice device, string hostname = "host", bool ephemeral = false)
    {
        var reply = await TryRegisterDeviceAsync(authKey, device, hostname, ephemeral);
        Assert.True(reply.Status == HttpStatusCode.OK, $"register: {reply.Status} {reply.Code}");
        return (reply.Body.GetProperty("node").Clone(), reply.Body.Str("nodeToken"));
    }

    public abstract Task<HttpStatusCode> LogoutAsync(string token);

    /// <summary>Replaces the node's WireGuard endpoints; the body is <c>{"node": Node}</c>.</summary>
    public abstract Task<Reply> SetEndpointsAsync(string token, params string[] endpoints);

    /// <summary>Opens a map stream expecting a refusal; the reply says which.</summary>
    public abstract Task<Reply> TryOpenMapAsync(string token);

    public abstract Task<MapReader> OpenMapAsync(string token);

    public abstract Task<Reply> GetKeyAsync(string id, string tailnet = "-");

    public abstract Task<JsonElement[]> ListKeysAsync(string tailnet = "-");

    public abstract Task<Reply> RevokeKeyAsync(string id, string tailnet = "-");

    public abstract Task<JsonElement[]> ListNodesAsync(string tailnet = "-");

    public abstract Task<Reply> TryGetNodeAsync(string nodeId, string tailnet = "-");

    /// <summary>The node, or null when it is not found; fails on anything else.</summary>
    public async Task<JsonElement?> GetNodeAsync(string nodeId, string tailnet = "-")
    {
        var reply = await TryGetNodeAsync(nodeId, tailnet);
        if (reply.Status == HttpStatusCode.NotFound)
        {
            return null;
        }

        Assert.True(reply.Status == HttpStatusCode.OK, $"get node: {reply.Status} {reply.Code}");
        return reply.Body;
    }

    public abstract Task<Reply> DeleteNodeAsync(string nodeId, string tailnet = "-");

    public abstract Task<Reply> ApproveNodeAsync(string nodeId, string tailnet = "-");

    public abstract Task<Reply> ExpireNodeAsync(string nodeId, string tailnet = "-");

    public abstract Task<Reply> RenameNodeAsync(string nodeId, string? name, string tailnet = "-");

    /// <summary>The tailnet's policy; the body is the policy document.</summary>
    public abstract Task<Reply> GetPolicyAsync(string tailnet = "-");

    public abstract Task<Reply> SetPolicyAsync(string policyJson, string tailnet = "-");

    /// <summary>A page of the audit log: <c>{"events": [...], "next": "..."}</c>, each event's <c>data</c> an object.</summary>
    public abstract Task<Reply> TryListEventsAsync(string? since = null, string? type = null, string? node = null, int? limit = null, string tailnet = "-");

    /// <summary>Every event of the log from the start, read page by page (<paramref name="pageSize"/> each).</summary>
    public async Task<JsonElement[]> AllEventsAsync(string? type = null, string? node = null, int pageSize = 1000, string tailnet = "-")
    {
        var events = new List<JsonElement>();
        string? since = null;
        while (true)
        {
            var reply = await TryListEventsAsync(since, type, node, pageSize, tailnet);
            Assert.True(reply.Status == HttpStatusCode.OK, $"events: {reply.Status} {reply.Code} {reply.Detail}");
            var page = reply.Body.GetProperty("events").EnumerateArray().ToArray();
            events.AddRange(page);
            since = reply.Body.Str("next");
            if (page.Length < pageSize)
            {
                return [.. events];
            }
        }
    }

    public abstract void Dispose();
}

/// <summary>A netmap stream as an agent reads it, one message at a time, in the HTTP API's JSON shape.</summary>
public abstract class MapReader : IAsyncDisposable
{
    private readonly CancellationTokenSource _closed = new();

    /// <summary>The next message, or null when the server closed the stream.</summary>
    public async Task<JsonElement?> NextAsync(TimeSpan within)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_closed.Token);
        timeout.CancelAfter(within);
        try
        {
            return await ReadAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"No map message within {within}.");
            throw;
        }
    }

    /// <summary>Skips messages until one matches; fails on timeout or if the stream ends first.</summary>
    public async Task<JsonElement> WaitForAsync(Func<JsonElement, bool> match, TimeSpan within, string what)
    {
        var deadline = DateTime.UtcNow + within;
        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            Assert.True(left > TimeSpan.Zero, $"Timed out waiting for {what}.");
            var message = await NextAsync(left);
            Assert.True(message is not null, $"The stream ended while waiting for {what}.");
            if (match(message.Value))
            {
                return message.Value;
            }
        }
    }

    /// <summary>Every message that arrives within <paramref name="period"/> (keepalives keep each read short).</summary>
    public async Task<List<JsonElement>> CollectAsync(TimeSpan period)
    {
        var messages = new List<JsonElement>();
        var deadline = DateTime.UtcNow + period;
        while (DateTime.UtcNow < deadline)
        {
            var message = await NextAsync(TimeSpan.FromSeconds(10));
            Assert.True(message is not null, "The stream ended.");
            messages.Add(message.Value);
        }

        return messages;
    }

    /// <summary>Reads until the server ends the stream; fails if it does not within the time given.</summary>
    public async Task WaitForEndAsync(TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (await NextAsync(deadline - DateTime.UtcNow) is not null)
        {
        }
    }

    private int _disposed;

    /// <summary>Closes the stream; a second call (a test that closed it early, then <c>await using</c>) does nothing.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        await _closed.CancelAsync();
        Close();
        _closed.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>The next message; null at the end of the stream.</summary>
    protected abstract Task<JsonElement?> ReadAsync(CancellationToken cancellationToken);

    protected abstract void Close();
}
