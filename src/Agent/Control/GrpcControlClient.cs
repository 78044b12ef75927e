using System.Runtime.CompilerServices;
using EphemeralOrleans.Protocol.V1;
using Google.Rpc;
using Grpc.Core;
using Grpc.Net.Client;

namespace EphemeralOrleans.Agent.Control;

/// <summary>The agent API over gRPC (the default transport).</summary>
public sealed class GrpcControlClient(Uri grpcUrl, GatewayTrust trust) : IControlClient
{
    private readonly GrpcChannel _channel = GrpcChannel.ForAddress(grpcUrl, new GrpcChannelOptions
    {
        HttpHandler = GrpcHandler(trust), DisposeHttpClient = true,
    });

    // As the channel's own handler would be: more streams than one HTTP/2 connection allows open further connections.
    private static SocketsHttpHandler GrpcHandler(GatewayTrust trust)
    {
        var handler = trust.CreateHandler();
        handler.EnableMultipleHttp2Connections = true;
        return handler;
    }

    private ControlService.ControlServiceClient Client => new(_channel);

    public static Metadata Bearer(string token) => new() { { "authorization", "Bearer " + token } };

    /// <summary>An <see cref="RpcException"/> as an <see cref="AgentFailure"/>: the ErrorInfo reason when the gateway gave one.</summary>
    public static AgentFailure Translate(RpcException exception)
    {
        var reason = exception.GetRpcStatus()?.GetDetail<ErrorInfo>()?.Reason;
        // RESOURCE_EXHAUSTED with a time to wait is a flood limit: it passes, so the agent backs off and tries again.
        var transient = exception.StatusCode is StatusCode.Unavailable or StatusCode.Internal or StatusCode.Unknown
            or StatusCode.DeadlineExceeded or StatusCode.Cancelled or StatusCode.Aborted
            || (exception.StatusCode == StatusCode.ResourceExhausted && exception.GetRpcStatus()?.GetDetail<RetryInfo>() is not null);
        // A transport failure (no reason from the gateway) says what went wrong with the connection.
        if (reason is null && exception.StatusCode == StatusCode.Unavailable && Connectivity.IsTlsFailure(exception.Status.DebugException))
        {
            return AgentFailure.Connecting(exception.Status.DebugException!);
        }

        var message = reason is null && exception.StatusCode == StatusCode.Unavailable
            ? $"The gateway could not be reached: {Connectivity.Describe(exception.Status.DebugException ?? exception)}"
            : exception.Status.Detail;
        return new AgentFailure(reason ?? (transient ? "unreachable" : exception.StatusCode.ToString()), message, transient);
    }

    public async Task<RegisterResponse> RegisterAsync(RegisterRequest request, CancellationToken cancellationToken)
    {
        try
        {
            return await Client.RegisterAsync(request, cancellationToken: cancellationToken);
        }
        catch (RpcException exception)
        {
            throw cancellationToken.IsCancellationRequested ? new OperationCanceledException(cancellationToken) : Translate(exception);
        }
    }

    public async IAsyncEnumerable<MapResponse> MapAsync(string nodeToken, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using var call = Client.Map(new MapRequest(), Bearer(nodeToken), cancellationToken: cancellationToken);
        while (true)
        {
            MapResponse message;
            try
            {
                if (!await call.ResponseStream.MoveNext(cancellationToken))
                {
                    yield break;
                }

                message = call.ResponseStream.Current;
            }
            catch (RpcException exception)
            {
                throw cancellationToken.IsCancellationRequested ? new OperationCanceledException(cancellationToken) : Translate(exception);
            }

            yield return message;
        }
    }

    public async Task<Node> SetEndpointsAsync(string nodeToken, IEnumerable<string> endpoints, CancellationToken cancellationToken)
    {
        try
        {
            return (await Client.SetEndpointsAsync(new SetEndpointsRequest { Endpoints = { endpoints } }, Bearer(nodeToken), cancellationToken: cancellationToken)).Node;
        }
        catch (RpcException exception)
        {
            throw cancellationToken.IsCancellationRequested ? new OperationCanceledException(cancellationToken) : Translate(exception);
        }
    }

    public async Task LogoutAsync(string nodeToken, bool agentExit, CancellationToken cancellationToken)
    {
        try
        {
            await Client.LogoutAsync(new LogoutRequest { Reason = agentExit ? "agent-exit" : "" }, Bearer(nodeToken), cancellationToken: cancellationToken);
        }
        catch (RpcException exception)
        {
            throw cancellationToken.IsCancellationRequested ? new OperationCanceledException(cancellationToken) : Translate(exception);
        }
    }

    public void Dispose() => _channel.Dispose();
}
