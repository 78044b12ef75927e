using EphemeralOrleans.Gateway.Application;
using RegisterRequest = EphemeralOrleans.Protocol.V1.RegisterRequest;
using EphemeralOrleans.Gateway.Hosting;
using EphemeralOrleans.Gateway.Map;
using EphemeralOrleans.Protocol.V1;
using Grpc.Core;
using Microsoft.Extensions.Options;

namespace EphemeralOrleans.Gateway.Grpc;

/// <summary>The agent API over gRPC: the same <see cref="ControlPlane"/> and <see cref="MapHub"/> as HTTP. Bound by
/// <see cref="ControlServiceBinding"/> (map messages are encoded once, not once per stream).</summary>
public sealed class ControlGrpcService(ControlPlane controlPlane, MapHub hub, IOptions<GatewayOptions> options, IConfiguration configuration)
    : ControlServiceBinding.ServiceBase
{
    public async Task<RegisterResponse> Register(RegisterRequest request, ServerCallContext context)
    {
        var proof = request.Proof is { } p ? new ProofRequest(p.Timestamp, p.Mac.ToBase64()) : null;
        var (node, token) = await controlPlane.RegisterAsync(
            // proto3 strings are never null: empty means not given.
            new Application.RegisterRequest(request.IdToken.Length > 0 && request.AuthKey.Length == 0 ? null : request.AuthKey, request.NodeKey, request.Hostname,
                request.Ephemeral, proof, request.IdToken.Length > 0 ? request.IdToken : null, request.Tailnet.Length > 0 ? request.Tailnet : null),
            GrpcCredentials.Bearer(context), context.CancellationToken);
        return new RegisterResponse { Node = node.ToProto(), NodeToken = token };
    }

    public async Task Map(MapRequest request, IServerStreamWriter<MapMessage> responseStream, ServerCallContext context)
    {
        var streamId = Guid.NewGuid().ToString("N");
        var (grain, session, slot) = await controlPlane.OpenSessionAsync(GrpcCredentials.Bearer(context), streamId);
        using var _ = slot;
        if (await hub.RunStreamAsync(grain, session, streamId,
            (message, cancellationToken) => responseStream.WriteAsync(message, cancellationToken), context.CancellationToken))
        {
            // An error, not a clean end (which tells the agent its node is gone): the agent reconnects.
            throw new RpcException(new global::Grpc.Core.Status(StatusCode.Unavailable, "The gateway is shutting down; reconnect."));
        }
    }

    public async Task<SetEndpointsResponse> SetEndpoints(SetEndpointsRequest request, ServerCallContext context) =>
        new() { Node = (await controlPlane.SetEndpointsAsync(GrpcCredentials.Bearer(context), request.Endpoints)).ToProto() };

    public async Task<LogoutResponse> Logout(LogoutRequest request, ServerCallContext context)
    {
        await controlPlane.LogoutAsync(GrpcCredentials.Bearer(context), request.Reason);
        return new LogoutResponse();
    }

    public async Task<EndpointsResponse> Endpoints(EndpointsRequest request, ServerCallContext context) =>
        new() { Grpc = options.Value.GrpcUrl(configuration) ?? "", ControlKey = await controlPlane.ControlKeyAsync(context.CancellationToken) };
}

/// <summary>Credentials in gRPC metadata: <c>authorization: Bearer …</c>.</summary>
internal static class GrpcCredentials
{
    public static string? Bearer(ServerCallContext context) => Credentials.Bearer(context.RequestHeaders.GetValue("authorization"));
}
