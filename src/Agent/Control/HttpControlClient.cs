using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Runtime.CompilerServices;
using System.Text.Json;
using EphemeralOrleans.Protocol;
using EphemeralOrleans.Protocol.V1;
using Google.Protobuf;

namespace EphemeralOrleans.Agent.Control;

/// <summary>What <c>GET /api/v1/machine/endpoints</c> tells an agent.</summary>
public sealed record GatewayDiscovery(Uri? GrpcUrl, byte[]? ControlKey);

/// <summary>The agent API over HTTP/1.1: JSON calls and the NDJSON netmap stream, read into the same messages as gRPC.</summary>
public sealed class HttpControlClient(Uri loginServer, GatewayTrust trust) : IControlClient
{
    // The HTTP API's JSON names are the proto's JSON names; new fields from newer gateways are ignored.
    private static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));
    private readonly HttpClient _http = new(trust.CreateHandler(drainResponses: false))
    {
        BaseAddress = loginServer, Timeout = Timeout.InfiniteTimeSpan,
    };

    /// <summary>The discovery document of the gateway behind <paramref name="loginServer"/>: where it serves gRPC, and
    /// its control key (absent from gateways older than registration proofs).</summary>
    public static async Task<GatewayDiscovery> DiscoverAsync(Uri loginServer, GatewayTrust trust, CancellationToken cancellationToken)
    {
        using var http = new HttpClient(trust.CreateHandler()) { BaseAddress = loginServer, Timeout = TimeSpan.FromSeconds(10) };
        JsonElement json;
        try
        {
            json = await SendAsync(() => http.GetAsync("/api/v1/machine/endpoints", cancellationToken), cancellationToken);
        }
        catch (Exception exception) when (exception is JsonException or AgentFailure { Code: "http_400" or "http_404" or "http_415" or "http_505" })
        {
            // Something answers, but not the gateway's HTTP API: most often its gRPC port.
            throw new AgentFailure("not_a_gateway", $"{loginServer} does not answer as the gateway's HTTP API; --login-server wants its HTTP URL (port 8080 by default), not the gRPC one.", transient: false);
        }

        var grpc = json.TryGetProperty("grpc", out var g) && g.GetString() is { Length: > 0 } url ? new Uri(url) : null;
        byte[]? controlKey = null;
        if (json.TryGetProperty("controlKey", out var c) && !KeyText.TryParse(c.GetString(), KeyText.ControlKeyPrefix, out controlKey))
        {
            throw new AgentFailure("invalid_control_key", $"The gateway's control key '{c}' is not 'controlkey:' and 64 hex digits.", transient: false);
        }

        return new GatewayDiscovery(grpc, controlKey);
    }

    public async Task<RegisterResponse> RegisterAsync(RegisterRequest request, CancellationToken cancellationToken)
    {
        var json = await SendAsync(() => _http.PostAsJsonAsync("/api/v1/machine/register",
            new
            {
                authKey = request.AuthKey.Length > 0 ? request.AuthKey : null, nodeKey = request.NodeKey, hostname = request.Hostname, ephemeral = request.Ephemeral,
                idToken = request.IdToken.Length > 0 ? request.IdToken : null, tailnet = request.Tailnet.Length > 0 ? request.Tailnet : null,
                proof = request.Proof is { } proof ? new { timestamp = proof.Timestamp, mac = proof.Mac.ToBase64() } : null,
            },
            cancellationToken), cancellationToken);
        return new RegisterResponse { Node = ParseNode(json.GetProperty("node")), NodeToken = json.GetProperty("nodeToken").GetString() };
    }

    public async IAsyncEnumerable<MapResponse> MapAsync(string nodeToken, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/machine/map");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", nodeToken);
        using var response = await SendRawAsync(() => _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken), cancellationToken);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken));
        while (true)
        {
            string? line;
            try
            {
                line = await reader.ReadLineAsync(cancellationToken);
            }
            catch (IOException exception) when (!cancellationToken.IsCancellationRequested)
            {
                throw AgentFailure.Unreachable($"The map stream broke: {exception.Message}");
            }

            if (line is null)
            {
                yield break;
            }

            yield return ParseMap(JsonDocument.Parse(line).RootElement);
        }
    }

    public async Task<Node> SetEndpointsAsync(string nodeToken, IEnumerable<string> endpoints, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Put, "/api/v1/machine/self/endpoints")
        {
            Content = JsonContent.Create(new { endpoints = endpoints.ToArray() }),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", nodeToken);
        var json = await SendAsync(() => _http.SendAsync(request, cancellationToken), cancellationToken);
        return ParseNode(json.GetProperty("node"));
    }

    public async Task LogoutAsync(string nodeToken, bool agentExit, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, agentExit ? "/api/v1/machine/logout?reason=agent-exit" : "/api/v1/machine/logout");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", nodeToken);
        using var response = await SendRawAsync(() => _http.SendAsync(request, cancellationToken), cancellationToken);
    }

    public void Dispose() => _http.Dispose();

    private static MapResponse ParseMap(JsonElement json) => json.GetProperty("type").GetString() switch
    {
        "full" => new MapResponse
        {
            Full = new FullMap
            {
                Version = json.GetProperty("version").GetInt64(),
                Self = ParseNode(json.GetProperty("self")),
                Peers = { json.GetProperty("peers").EnumerateArray().Select(ParseNode) },
                PacketFilter = { ParseFilter(json) ?? [] },
            },
        },
        "delta" => new MapResponse
        {
            Delta = new MapDelta
            {
                Version = json.GetProperty("version").GetInt64(),
                PeersChanged = { json.GetProperty("peersChanged").EnumerateArray().Select(ParseNode) },
                PeersRemoved = { json.GetProperty("peersRemoved").EnumerateArray().Select(e => e.GetString()!) },
                Self = json.TryGetProperty("self", out var self) ? ParseNode(self) : null,
                PeersChangedPatch =
                {
                    json.TryGetProperty("peersChangedPatch", out var patches)
                        ? patches.EnumerateArray().Select(p => Parser.Parse<PeerPatch>(p.GetRawText()))
                        : [],
                },
                PacketFilter = ParseFilter(json) is { } filter ? new PacketFilter { Rules = { filter } } : null,
            },
        },
        _ => new MapResponse { Keepalive = new KeepAlive() },
    };

    private static Node ParseNode(JsonElement json) => Parser.Parse<Node>(json.GetRawText());

    private static PacketFilterRule[]? ParseFilter(JsonElement json) =>
        json.TryGetProperty("packetFilter", out var filter)
            ? filter.EnumerateArray().Select(r => Parser.Parse<PacketFilterRule>(r.GetRawText())).ToArray()
            : null;

    /// <summary>Sends and reads the JSON answer; refusals as in <see cref="SendRawAsync"/>.</summary>
    internal static async Task<JsonElement> SendAsync(Func<Task<HttpResponseMessage>> send, CancellationToken cancellationToken)
    {
        using var response = await SendRawAsync(send, cancellationToken);
        return await response.Content.ReadFromJsonAsync<JsonElement>(cancellationToken);
    }

    /// <summary>Sends; a refusal becomes an <see cref="AgentFailure"/> with the problem's code, a failed connection a transient one.</summary>
    internal static async Task<HttpResponseMessage> SendRawAsync(Func<Task<HttpResponseMessage>> send, CancellationToken cancellationToken)
    {
        HttpResponseMessage response;
        try
        {
            response = await send();
        }
        catch (Exception exception) when (exception is HttpRequestException or IOException
            || (exception is TaskCanceledException && !cancellationToken.IsCancellationRequested))
        {
            throw AgentFailure.Connecting(exception);
        }

        if (response.IsSuccessStatusCode)
        {
            return response;
        }

        using (response)
        {
            var code = "http_" + (int)response.StatusCode;
            var detail = response.ReasonPhrase ?? "";
            if (response.Content.Headers.ContentType?.MediaType == "application/problem+json")
            {
                var problem = await response.Content.ReadFromJsonAsync<JsonElement>(cancellationToken);
                code = problem.TryGetProperty("code", out var c) ? c.GetString() ?? code : code;
                detail = problem.TryGetProperty("detail", out var d) ? d.GetString() ?? detail : detail;
            }

            // A flood limit (429) passes: the agent backs off and tries again.
            throw new AgentFailure(code, detail, transient: response.StatusCode == System.Net.HttpStatusCode.TooManyRequests
                || ((int)response.StatusCode >= 500 && code != "address_pool_exhausted"));
        }
    }
}
