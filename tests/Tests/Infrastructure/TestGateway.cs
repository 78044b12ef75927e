using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using EphemeralOrleans.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace EphemeralOrleans.Tests.Infrastructure;

/// <summary>The HTTP API as tests use it: an agent client, an admin client, and helpers that fail the test on surprises.</summary>
public class GatewayClient : IDisposable
{
    public const string AdminKey = "eo-admin-test-key";

    public GatewayClient(Uri httpUrl)
    {
        Http = new HttpClient { BaseAddress = httpUrl, Timeout = TimeSpan.FromSeconds(30) };
        Admin = new HttpClient { BaseAddress = httpUrl, Timeout = TimeSpan.FromSeconds(30) };
        Admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
    }

    public HttpClient Http { get; }

    public HttpClient Admin { get; }

    public static string NewNodeKey() => "nodekey:" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));

    public async Task<JsonElement> CreateKeyAsync(bool reusable = true, bool ephemeral = true, bool preauthorized = true,
        string[]? tags = null, long? expirySeconds = null, string tailnet = "-")
    {
        var response = await Admin.PostAsJsonAsync($"/api/v1/tailnets/{tailnet}/keys",
            new { reusable, ephemeral, preauthorized, tags = tags ?? [], expirySeconds, description = "test" });
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        return await response.Content.ReadFromJsonAsync<JsonElement>();
    }

    public Task<HttpResponseMessage> PostRegisterAsync(string authKey, string? nodeKey = null, string hostname = "host", bool ephemeral = false) =>
        Http.PostAsJsonAsync("/api/v1/machine/register", new { authKey, nodeKey = nodeKey ?? NewNodeKey(), hostname, ephemeral });

    /// <summary>Registers and returns (node, token), failing the test on any refusal.</summary>
    public async Task<(JsonElement Node, string Token)> RegisterAsync(string authKey, string? nodeKey = null, string hostname = "host", bool ephemeral = false)
    {
        var response = await PostRegisterAsync(authKey, nodeKey, hostname, ephemeral);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"register: {(int)response.StatusCode} {body}");
        var json = JsonDocument.Parse(body).RootElement;
        return (json.GetProperty("node").Clone(), json.GetProperty("nodeToken").GetString()!);
    }

    public async Task<HttpStatusCode> LogoutAsync(string token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/machine/logout");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return (await Http.SendAsync(request)).StatusCode;
    }

    public async Task<JsonElement[]> ListNodesAsync(string tailnet = "-")
    {
        var json = await Admin.GetFromJsonAsync<JsonElement>($"/api/v1/tailnets/{tailnet}/nodes");
        return json.GetProperty("nodes").EnumerateArray().Select(n => n.Clone()).ToArray();
    }

    public async Task<JsonElement?> GetNodeAsync(string nodeId, string tailnet = "-")
    {
        var response = await Admin.GetAsync($"/api/v1/tailnets/{tailnet}/nodes/{nodeId}");
        if (response.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }

        response.EnsureSuccessStatusCode();
        return await response.Content.ReadFromJsonAsync<JsonElement>();
    }

    public Task<MapReader> OpenMapAsync(string token) => MapReader.OpenAsync(Http, token);

    public void Dispose()
    {
        Http.Dispose();
        Admin.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>
/// A real gateway in this process: real Kestrel sockets on free loopback ports and a co-hosted silo (embedded mode,
/// in-memory storage), configured with short timeouts so lifecycle tests take seconds.
/// </summary>
public sealed class TestGateway : GatewayClient, IAsyncDisposable
{
    /// <summary>Short timings: 2 s inactivity timeout and quarantine, 50 ms batches, 1 s keepalives.</summary>
    public static readonly IReadOnlyDictionary<string, string?> ShortTimings = new Dictionary<string, string?>
    {
        ["Ephemeral:InactivityTimeout"] = "00:00:02",
        ["Ephemeral:IpQuarantine"] = "00:00:02",
        ["Ephemeral:ReminderPeriod"] = "00:00:02",
        ["Silo:MinimumReminderPeriod"] = "00:00:01",
        ["Map:BatchWindow"] = "00:00:00.050",
        ["Map:KeepAliveInterval"] = "00:00:01",
    };

    private readonly WebApplication _app;

    private TestGateway(WebApplication app, Uri httpUrl)
        : base(httpUrl)
    {
        _app = app;
    }

    public IServiceProvider Services => _app.Services;

    public static async Task<TestGateway> StartAsync(IReadOnlyDictionary<string, string?>? overrides = null)
    {
        var settings = new Dictionary<string, string?>(ShortTimings) { ["Admin:ApiKey"] = AdminKey };
        foreach (var (key, value) in overrides ?? new Dictionary<string, string?>())
        {
            settings[key] = value;
        }

        var (app, httpUrl) = await InProcessGateway.StartAsync(settings);
        return new TestGateway(app, httpUrl);
    }

    public T Service<T>()
        where T : notnull => _app.Services.GetRequiredService<T>();

    public async ValueTask DisposeAsync()
    {
        Dispose();
        await _app.StopAsync(CancellationToken.None);
        await _app.DisposeAsync();
    }
}

/// <summary>A netmap stream read line by line, as an agent would.</summary>
public sealed class MapReader : IAsyncDisposable
{
    private readonly HttpResponseMessage _response;
    private readonly StreamReader _reader;
    private readonly CancellationTokenSource _closed = new();

    private MapReader(HttpResponseMessage response, StreamReader reader)
    {
        _response = response;
        _reader = reader;
    }

    public static async Task<MapReader> OpenAsync(HttpClient http, string token)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/machine/map");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/x-ndjson", response.Content.Headers.ContentType?.MediaType);
        return new MapReader(response, new StreamReader(await response.Content.ReadAsStreamAsync()));
    }

    /// <summary>The next message, or null when the server closed the stream.</summary>
    public async Task<JsonElement?> NextAsync(TimeSpan within)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_closed.Token);
        timeout.CancelAfter(within);
        try
        {
            var line = await _reader.ReadLineAsync(timeout.Token);
            return line is null ? null : JsonDocument.Parse(line).RootElement.Clone();
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

    /// <summary>Reads until the server ends the stream; fails if it does not within the time given.</summary>
    public async Task WaitForEndAsync(TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (await NextAsync(deadline - DateTime.UtcNow) is not null)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _closed.CancelAsync();
        _reader.Dispose();
        _response.Dispose();
        _closed.Dispose();
    }
}

public static class JsonExtensions
{
    public static string Str(this JsonElement element, string property) => element.GetProperty(property).GetString()!;

    public static string Type(this JsonElement message) => message.Str("type");

    public static string[] Ids(this JsonElement message, string property) =>
        message.TryGetProperty(property, out var array)
            ? array.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.String ? e.GetString()! : e.Str("id")).ToArray()
            : [];
}
