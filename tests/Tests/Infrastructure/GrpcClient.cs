using System.Net;
using System.Text.Json;
using EphemeralOrleans.Protocol.V1;
using Google.Rpc;
using Grpc.Core;
using Grpc.Net.Client;

namespace EphemeralOrleans.Tests.Infrastructure;

/// <summary>
/// The gRPC API as tests use it. Answers are turned into the HTTP API's JSON shape and status codes, so the same test
/// body checks both transports; refusals must carry a <c>google.rpc.ErrorInfo</c> with the problem code.
/// </summary>
public sealed class GrpcClient : ApiClient
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    private readonly GrpcChannel _channel;
    private readonly ControlService.ControlServiceClient _control;
    private readonly AdminService.AdminServiceClient _admin;
    private readonly Metadata _adminHeaders = new() { { "authorization", "Bearer " + AdminKey } };

    public GrpcClient(Uri grpcUrl)
    {
        _channel = GrpcChannel.ForAddress(grpcUrl);
        _control = new ControlService.ControlServiceClient(_channel);
        _admin = new AdminService.AdminServiceClient(_channel);
    }

    public override Transport Transport => Transport.Grpc;

    public static Metadata Bearer(string token) => new() { { "authorization", "Bearer " + token } };

    public override Task<Reply> TryCreateKeyAsync(bool reusable, bool ephemeral, bool preauthorized, string[] tags, long? expirySeconds, string tailnet = "-") =>
        CallAsync(async () =>
        {
            var request = new CreateKeyRequest
            {
                Tailnet = tailnet, Reusable = reusable, Ephemeral = ephemeral, Preauthorized = preauthorized, Tags = { tags }, Description = "test",
            };
            if (expirySeconds is { } seconds)
            {
                request.ExpirySeconds = seconds;
            }

            var created = await _admin.CreateKeyAsync(request, _adminHeaders);
            var key = ToJson(created.AuthKey);
            return (HttpStatusCode.Created, With(key, "key", created.Key));
        });

    public override Task<Reply> TryRegisterAsync(string authKey, string? nodeKey = null, string hostname = "host", bool ephemeral = false,
        Protocol.RegistrationProof? proof = null, string? nodeToken = null) =>
        CallAsync(async () =>
        {
            var request = new RegisterRequest { AuthKey = authKey, NodeKey = nodeKey ?? NewNodeKey(), Hostname = hostname, Ephemeral = ephemeral };
            if (proof is not null)
            {
                request.Proof = new RegistrationProof { Timestamp = proof.Timestamp, Mac = Google.Protobuf.ByteString.CopyFrom(proof.Mac) };
            }

            var response = await _control.RegisterAsync(request, nodeToken is null ? null : Bearer(nodeToken));
            return (HttpStatusCode.OK, Serialize(new { node = ToJson(response.Node), nodeToken = response.NodeToken }));
        });

    /// <summary>Registers with an OIDC ID token instead of an auth key (gRPC).</summary>
    public Task<Reply> TryRegisterWithTokenAsync(string idToken, string? nodeKey = null, string hostname = "host", string? tailnet = null) =>
        CallAsync(async () =>
        {
            var response = await _control.RegisterAsync(new RegisterRequest { IdToken = idToken, NodeKey = nodeKey ?? NewNodeKey(), Hostname = hostname, Tailnet = tailnet ?? "" });
            return (HttpStatusCode.OK, Serialize(new { node = ToJson(response.Node), nodeToken = response.NodeToken }));
        });

    public override async Task<string> ControlKeyAsync() => (await _control.EndpointsAsync(new EndpointsRequest())).ControlKey;

    public override async Task<HttpStatusCode> LogoutAsync(string token) =>
        (await CallAsync(async () =>
        {
            await _control.LogoutAsync(new LogoutRequest(), Bearer(token));
            return (HttpStatusCode.NoContent, default(JsonElement));
        })).Status;

    public override Task<Reply> SetEndpointsAsync(string token, params string[] endpoints) =>
        CallAsync(async () =>
        {
            var response = await _control.SetEndpointsAsync(new SetEndpointsRequest { Endpoints = { endpoints } }, Bearer(token));
            return (HttpStatusCode.OK, Serialize(new { node = ToJson(response.Node) }));
        });

    public override async Task<Reply> TryOpenMapAsync(string token)
    {
        using var call = _control.Map(new MapRequest(), Bearer(token));
        return await CallAsync(async () =>
        {
            await call.ResponseStream.MoveNext(CancellationToken.None);
            return (HttpStatusCode.OK, default(JsonElement));
        });
    }

    public override async Task<MapReader> OpenMapAsync(string token)
    {
        var call = _control.Map(new MapRequest(), Bearer(token));
        // gRPC sends headers with the first message; wait for them so an open stream means the session is open.
        await call.ResponseHeadersAsync;
        return new GrpcMapReader(call);
    }

    public override Task<Reply> GetKeyAsync(string id, string tailnet = "-") =>
        CallAsync(async () => (HttpStatusCode.OK, ToJson(await _admin.GetKeyAsync(new GetKeyRequest { Tailnet = tailnet, Id = id }, _adminHeaders))));

    public override async Task<JsonElement[]> ListKeysAsync(string tailnet = "-") =>
        (await _admin.ListKeysAsync(new ListKeysRequest { Tailnet = tailnet }, _adminHeaders)).Keys.Select(ToJson).ToArray();

    public override Task<Reply> RevokeKeyAsync(string id, string tailnet = "-") =>
        CallAsync(async () =>
        {
            await _admin.RevokeKeyAsync(new RevokeKeyRequest { Tailnet = tailnet, Id = id }, _adminHeaders);
            return (HttpStatusCode.NoContent, default(JsonElement));
        });

    public override async Task<JsonElement[]> ListNodesAsync(string tailnet = "-") =>
        (await _admin.ListNodesAsync(new ListNodesRequest { Tailnet = tailnet }, _adminHeaders)).Nodes.Select(ToJson).ToArray();

    public override Task<Reply> TryGetNodeAsync(string nodeId, string tailnet = "-") =>
        CallAsync(async () => (HttpStatusCode.OK, ToJson(await _admin.GetNodeAsync(new GetNodeRequest { Tailnet = tailnet, Id = nodeId }, _adminHeaders))));

    public override Task<Reply> DeleteNodeAsync(string nodeId, string tailnet = "-") =>
        CallAsync(async () =>
        {
            await _admin.DeleteNodeAsync(new DeleteNodeRequest { Tailnet = tailnet, Id = nodeId }, _adminHeaders);
            return (HttpStatusCode.NoContent, default(JsonElement));
        });

    public override Task<Reply> ApproveNodeAsync(string nodeId, string tailnet = "-") =>
        CallAsync(async () => (HttpStatusCode.OK, ToJson(await _admin.ApproveNodeAsync(new ApproveNodeRequest { Tailnet = tailnet, Id = nodeId }, _adminHeaders))));

    public override Task<Reply> ExpireNodeAsync(string nodeId, string tailnet = "-") =>
        CallAsync(async () =>
        {
            await _admin.ExpireNodeAsync(new ExpireNodeRequest { Tailnet = tailnet, Id = nodeId }, _adminHeaders);
            return (HttpStatusCode.NoContent, default(JsonElement));
        });

    public override Task<Reply> RenameNodeAsync(string nodeId, string? name, string tailnet = "-") =>
        CallAsync(async () => (HttpStatusCode.OK, ToJson(await _admin.RenameNodeAsync(new RenameNodeRequest { Tailnet = tailnet, Id = nodeId, Name = name ?? "" }, _adminHeaders))));

    public override Task<Reply> GetPolicyAsync(string tailnet = "-") =>
        CallAsync(async () => (HttpStatusCode.OK, JsonDocument.Parse(
            (await _admin.GetPolicyAsync(new GetPolicyRequest { Tailnet = tailnet }, _adminHeaders)).PolicyJson).RootElement.Clone()));

    public override Task<Reply> SetPolicyAsync(string policyJson, string tailnet = "-") =>
        CallAsync(async () => (HttpStatusCode.OK, JsonDocument.Parse(
            (await _admin.SetPolicyAsync(new SetPolicyRequest { Tailnet = tailnet, PolicyJson = policyJson }, _adminHeaders)).PolicyJson).RootElement.Clone()));

    public override Task<Reply> TryListEventsAsync(string? since = null, string? type = null, string? node = null, int? limit = null, string tailnet = "-") =>
        CallAsync(async () =>
        {
            var page = await _admin.ListEventsAsync(new ListEventsRequest
            {
                Tailnet = tailnet, Since = since ?? "", Type = type ?? "", Node = node ?? "", Limit = limit ?? 0,
            }, _adminHeaders);
            var events = page.Events.Select(e => new Dictionary<string, object?>
            {
                ["id"] = e.Id, ["time"] = e.Time.ToDateTimeOffset(), ["type"] = e.Type, ["actor"] = e.Actor, ["target"] = e.Target,
                ["node"] = e.Node.Length > 0 ? e.Node : null, ["data"] = JsonDocument.Parse(e.DataJson).RootElement.Clone(),
            });
            return (HttpStatusCode.OK, JsonSerializer.SerializeToElement(new { events, next = page.Next }, Json));
        });

    public override void Dispose() => _channel.Dispose();

    /// <summary>The HTTP status that the API gives for the same refusal.</summary>
    public static HttpStatusCode HttpStatusOf(StatusCode code) => code switch
    {
        StatusCode.InvalidArgument => HttpStatusCode.BadRequest,
        StatusCode.Unauthenticated => HttpStatusCode.Unauthorized,
        StatusCode.PermissionDenied => HttpStatusCode.Forbidden,
        StatusCode.NotFound => HttpStatusCode.NotFound,
        StatusCode.AlreadyExists => HttpStatusCode.Conflict,
        StatusCode.ResourceExhausted or StatusCode.Unavailable => HttpStatusCode.ServiceUnavailable,
        _ => HttpStatusCode.InternalServerError,
    };

    public static JsonElement ToJson(Node node) => node.Subject.Length > 0 ? With(NodeJson(node), "subject", node.Subject) : NodeJson(node);

    private static JsonElement NodeJson(Node node) => Serialize(new
    {
        node.Id,
        node.Name,
        node.Hostname,
        node.NodeKey,
        node.Ipv4,
        node.Ipv6,
        node.Ephemeral,
        Tags = node.Tags.ToArray(),
        node.Online,
        LastSeen = node.LastSeen?.ToDateTimeOffset(),
        Created = node.Created.ToDateTimeOffset(),
        node.Authorized,
        node.LoggedOut,
        node.KeyId,
        node.Tailnet,
        Endpoints = node.Endpoints.ToArray(),
        AllowedIps = node.AllowedIps.ToArray(),
    });

    public static JsonElement ToJson(MapResponse message) => message.MessageCase switch
    {
        MapResponse.MessageOneofCase.Full => Serialize(new
        {
            type = "full", version = message.Full.Version, self = ToJson(message.Full.Self), peers = message.Full.Peers.Select(ToJson).ToArray(),
            packetFilter = message.Full.PacketFilter.Select(r => new { sources = r.Sources.ToArray(), ports = r.Ports }).ToArray(),
        }),
        MapResponse.MessageOneofCase.Delta => Serialize(new
        {
            type = "delta",
            version = message.Delta.Version,
            peersChanged = message.Delta.PeersChanged.Select(ToJson).ToArray(),
            peersRemoved = message.Delta.PeersRemoved.ToArray(),
            self = message.Delta.Self is { } self ? ToJson(self) : (JsonElement?)null,
            peersChangedPatch = message.Delta.PeersChangedPatch.Count > 0
                ? message.Delta.PeersChangedPatch.Select(p => new { id = p.Id, online = p.Online, lastSeen = p.LastSeen?.ToDateTimeOffset() }).ToArray()
                : null,
            packetFilter = message.Delta.PacketFilter?.Rules.Select(r => new { sources = r.Sources.ToArray(), ports = r.Ports }).ToArray(),
        }),
        MapResponse.MessageOneofCase.Keepalive => Serialize(new { type = "keepalive" }),
        _ => throw new InvalidOperationException($"Map message without a case: {message}"),
    };

    private static JsonElement ToJson(AuthKey key) => Serialize(new
    {
        key.Id,
        key.Tailnet,
        key.Reusable,
        key.Ephemeral,
        key.Preauthorized,
        Tags = key.Tags.ToArray(),
        Created = key.Created.ToDateTimeOffset(),
        Expires = key.Expires?.ToDateTimeOffset(),
        key.Description,
        key.Revoked,
        key.Uses,
    });

    private static JsonElement Serialize(object value) => JsonSerializer.SerializeToElement(value, Json);

    private static JsonElement With(JsonElement json, string name, string value)
    {
        var properties = json.EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value);
        properties[name] = value;
        return Serialize(properties);
    }

    private static async Task<Reply> CallAsync(Func<Task<(HttpStatusCode, JsonElement)>> call)
    {
        try
        {
            var (status, body) = await call();
            return new Reply(status, null, body);
        }
        catch (RpcException exception)
        {
            var status = exception.GetRpcStatus();
            var reason = status?.GetDetail<ErrorInfo>()?.Reason;
            Assert.True(reason is not null, $"gRPC refusal without ErrorInfo: {exception.Status}");
            // RESOURCE_EXHAUSTED with a time to wait is the HTTP API's 429; without one, its 503 (a pool exhausted).
            var http = exception.StatusCode == StatusCode.ResourceExhausted && status!.GetDetail<RetryInfo>() is not null
                ? HttpStatusCode.TooManyRequests
                : HttpStatusOf(exception.StatusCode);
            return new Reply(http, reason, default, exception.Status.Detail);
        }
    }
}

/// <summary>A gRPC netmap stream, message by message.</summary>
internal sealed class GrpcMapReader(AsyncServerStreamingCall<MapResponse> call) : MapReader
{
    protected override async Task<JsonElement?> ReadAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await call.ResponseStream.MoveNext(cancellationToken) ? GrpcClient.ToJson(call.ResponseStream.Current) : null;
        }
        catch (RpcException exception) when (exception.StatusCode == StatusCode.Cancelled && cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException(cancellationToken);
        }
    }

    protected override void Close() => call.Dispose();
}
