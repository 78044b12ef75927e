using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using EphemeralOrleans.Protocol;
using EphemeralOrleans.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace EphemeralOrleans.Tests.Infrastructure;

/// <summary>The HTTP API as tests use it: an agent client, an admin client, and helpers that fail the test on surprises.</summary>
public class GatewayClient : ApiClient
{
    public GatewayClient(Uri httpUrl)
    {
        // An agent's stream ends when its connection closes. By default HttpClient drains an unfinished response for up
        // to 2 s before closing the connection, so the gateway would see a closed map stream up to 2 s late.
        Http = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0, ResponseDrainTimeout = TimeSpan.Zero })
        {
            BaseAddress = httpUrl, Timeout = TimeSpan.FromSeconds(30),
        };
        Admin = new HttpClient { BaseAddress = httpUrl, Timeout = TimeSpan.FromSeconds(30) };
        Admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
    }

    public HttpClient Http { get; }

    public HttpClient Admin { get; }

    public override Transport Transport => Transport.Http;

    public Task<HttpResponseMessage> PostRegisterAsync(string authKey, string? nodeKey = null, string hostname = "host", bool ephemeral = false,
        RegistrationProof? proof = null, string? nodeToken = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/machine/register")
        {
            Content = JsonContent.Create(new
            {
                authKey, nodeKey = nodeKey ?? NewNodeKey(), hostname, ephemeral,
                proof = proof is null ? null : new { timestamp = proof.Timestamp, mac = Convert.ToBase64String(proof.Mac) },
            }),
        };
        if (nodeToken is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", nodeToken);
        }

        return Http.SendAsync(request);
    }

    /// <summary>Registers with an OIDC ID token instead of an auth key (HTTP).</summary>
    public async Task<Reply> TryRegisterWithTokenAsync(string idToken, string? nodeKey = null, string hostname = "host", string? tailnet = null, string? nodeToken = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/machine/register")
        {
            Content = JsonContent.Create(new { idToken, nodeKey = nodeKey ?? NewNodeKey(), hostname, tailnet }),
        };
        if (nodeToken is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", nodeToken);
        }

        return await ReplyAsync(await Http.SendAsync(request));
    }

    /// <summary>Creates a trust policy (HTTP admin API); the body is the API's.</summary>
    public async Task<Reply> TryCreateTrustPolicyAsync(object body, string tailnet = "-") =>
        await ReplyAsync(await Admin.PostAsJsonAsync($"/api/v1/tailnets/{tailnet}/trust-policies", body));

    public override async Task<string> ControlKeyAsync() =>
        (await Http.GetFromJsonAsync<JsonElement>("/api/v1/machine/endpoints")).Str("controlKey");

    public override async Task<Reply> TryCreateKeyAsync(bool reusable, bool ephemeral, bool preauthorized, string[] tags, long? expirySeconds, string tailnet = "-") =>
        await ReplyAsync(await Admin.PostAsJsonAsync($"/api/v1/tailnets/{tailnet}/keys",
            new { reusable, ephemeral, preauthorized, tags, expirySeconds, description = "test" }));

    public override async Task<Reply> TryRegisterAsync(string authKey, string? nodeKey = null, string hostname = "host", bool ephemeral = false,
        RegistrationProof? proof = null, string? nodeToken = null) =>
        await ReplyAsync(await PostRegisterAsync(authKey, nodeKey, hostname, ephemeral, proof, nodeToken));

    public override async Task<HttpStatusCode> LogoutAsync(string token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/machine/logout");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return (await Http.SendAsync(request)).StatusCode;
    }

    public override async Task<Reply> SetEndpointsAsync(string token, params string[] endpoints)
    {
        using var request = new HttpRequestMessage(HttpMethod.Put, "/api/v1/machine/self/endpoints") { Content = JsonContent.Create(new { endpoints }) };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return await ReplyAsync(await Http.SendAsync(request));
    }

    public override async Task<Reply> TryOpenMapAsync(string token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/machine/map");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var response = await Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        return response.IsSuccessStatusCode ? new Reply(response.StatusCode, null, default) : await ReplyAsync(response);
    }

    public override Task<MapReader> OpenMapAsync(string token) => HttpMapReader.OpenAsync(Http, token);

    public override async Task<Reply> GetKeyAsync(string id, string tailnet = "-") =>
        await ReplyAsync(await Admin.GetAsync($"/api/v1/tailnets/{tailnet}/keys/{id}"));

    public override async Task<JsonElement[]> ListKeysAsync(string tailnet = "-")
    {
        var json = await Admin.GetFromJsonAsync<JsonElement>($"/api/v1/tailnets/{tailnet}/keys");
        return json.GetProperty("keys").EnumerateArray().Select(n => n.Clone()).ToArray();
    }

    public override async Task<Reply> RevokeKeyAsync(string id, string tailnet = "-") =>
        await ReplyAsync(await Admin.DeleteAsync($"/api/v1/tailnets/{tailnet}/keys/{id}"));

    public override async Task<JsonElement[]> ListNodesAsync(string tailnet = "-")
    {
        var json = await Admin.GetFromJsonAsync<JsonElement>($"/api/v1/tailnets/{tailnet}/nodes");
        return json.GetProperty("nodes").EnumerateArray().Select(n => n.Clone()).ToArray();
    }

    public override async Task<Reply> TryGetNodeAsync(string nodeId, string tailnet = "-") =>
        await ReplyAsync(await Admin.GetAsync($"/api/v1/tailnets/{tailnet}/nodes/{nodeId}"));

    public override async Task<Reply> DeleteNodeAsync(string nodeId, string tailnet = "-") =>
        await ReplyAsync(await Admin.DeleteAsync($"/api/v1/tailnets/{tailnet}/nodes/{nodeId}"));

    public override async Task<Reply> ApproveNodeAsync(string nodeId, string tailnet = "-") =>
        await ReplyAsync(await Admin.PostAsync($"/api/v1/tailnets/{tailnet}/nodes/{nodeId}/approve", null));

    public override async Task<Reply> ExpireNodeAsync(string nodeId, string tailnet = "-") =>
        await ReplyAsync(await Admin.PostAsync($"/api/v1/tailnets/{tailnet}/nodes/{nodeId}/expire", null));

    public override async Task<Reply> RenameNodeAsync(string nodeId, string? name, string tailnet = "-") =>
        await ReplyAsync(await Admin.PostAsJsonAsync($"/api/v1/tailnets/{tailnet}/nodes/{nodeId}/rename", new { name }));

    public override async Task<Reply> GetPolicyAsync(string tailnet = "-") =>
        await ReplyAsync(await Admin.GetAsync($"/api/v1/tailnets/{tailnet}/policy"));

    public override async Task<Reply> SetPolicyAsync(string policyJson, string tailnet = "-") =>
        await ReplyAsync(await Admin.PutAsync($"/api/v1/tailnets/{tailnet}/policy", new StringContent(policyJson, System.Text.Encoding.UTF8, "application/json")));

    public override async Task<Reply> TryListEventsAsync(string? since = null, string? type = null, string? node = null, int? limit = null, string tailnet = "-")
    {
        var query = new List<string>();
        void Add(string name, string? value)
        {
            if (value is not null)
            {
                query.Add($"{name}={Uri.EscapeDataString(value)}");
            }
        }

        Add("since", since);
        Add("type", type);
        Add("node", node);
        Add("limit", limit?.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return await ReplyAsync(await Admin.GetAsync($"/api/v1/tailnets/{tailnet}/events?{string.Join('&', query)}"));
    }

    /// <summary>Logs out with a reason (<c>?reason=</c>), as an agent does.</summary>
    public async Task<Reply> TryLogoutAsync(string token, string reason)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/v1/machine/logout?reason={Uri.EscapeDataString(reason)}");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return await ReplyAsync(await Http.SendAsync(request));
    }

    public override void Dispose()
    {
        Http.Dispose();
        Admin.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>A response as a <see cref="Reply"/>; refusals must be problem+json with a code.</summary>
    private static async Task<Reply> ReplyAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        var body = text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
        if (response.IsSuccessStatusCode)
        {
            return new Reply(response.StatusCode, null, body);
        }

        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        return new Reply(response.StatusCode, body.Str("code"), body, body.TryGetProperty("detail", out var detail) ? detail.GetString() : null);
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
        // Tests register and stream far faster than any one source should; FloodTests turn the limits on.
        ["RateLimits:Enabled"] = "false",
    };

    private readonly WebApplication _app;

    private readonly GrpcClient _grpc;

    private TestGateway(WebApplication app, Uri httpUrl)
        : base(httpUrl)
    {
        _app = app;
        _grpc = new GrpcClient(new Uri(app.Configuration["Kestrel:Endpoints:Grpc:Url"]!));
    }

    public IServiceProvider Services => _app.Services;

    public Uri GrpcUrl => new(_app.Configuration["Kestrel:Endpoints:Grpc:Url"]!);

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

    /// <summary>The same gateway through <paramref name="transport"/>: this HTTP client, or a gRPC one on its gRPC endpoint.</summary>
    public ApiClient Over(Transport transport) => transport == Transport.Http ? this : _grpc;

    public T Service<T>()
        where T : notnull => _app.Services.GetRequiredService<T>();

    private bool _disposed;

    /// <summary>Stops the gateway; a second call (a test that stopped it early, then <c>await using</c>) does nothing.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        Dispose();
        _grpc.Dispose();
        await _app.StopAsync(CancellationToken.None);
        await _app.DisposeAsync();
    }
}

/// <summary>A netmap stream read line by line, as an agent would.</summary>
public sealed class HttpMapReader : MapReader
{
    private readonly HttpResponseMessage _response;
    private readonly StreamReader _reader;

    private HttpMapReader(HttpResponseMessage response, StreamReader reader)
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
        return new HttpMapReader(response, new StreamReader(await response.Content.ReadAsStreamAsync()));
    }

    protected override async Task<JsonElement?> ReadAsync(CancellationToken cancellationToken)
    {
        var line = await _reader.ReadLineAsync(cancellationToken);
        return line is null ? null : JsonDocument.Parse(line).RootElement.Clone();
    }

    protected override void Close()
    {
        _reader.Dispose();
        _response.Dispose();
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
