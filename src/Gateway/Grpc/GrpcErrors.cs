using EphemeralOrleans.Contracts.Model;
using Google.Rpc;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace EphemeralOrleans.Gateway.Grpc;

/// <summary>
/// The gRPC twin of <see cref="Http.Problems"/>: refusals become status codes with a <c>google.rpc.ErrorInfo</c> whose
/// reason is the problem code; a cluster that cannot answer is UNAVAILABLE; anything else INTERNAL, logged.
/// </summary>
public sealed partial class GrpcErrors(ILogger<GrpcErrors> logger) : Interceptor
{
    public const string Domain = "ephemeral-orleans";

    public static StatusCode StatusOf(FailureKind kind) => kind switch
    {
        FailureKind.Invalid => StatusCode.InvalidArgument,
        FailureKind.Unauthenticated => StatusCode.Unauthenticated,
        FailureKind.Forbidden => StatusCode.PermissionDenied,
        FailureKind.NotFound => StatusCode.NotFound,
        FailureKind.Exhausted => StatusCode.ResourceExhausted,
        FailureKind.Conflict => StatusCode.AlreadyExists,
        FailureKind.Dependency => StatusCode.Unavailable,
        FailureKind.Throttled => StatusCode.ResourceExhausted,
        _ => StatusCode.Internal,
    };

    public static RpcException From(Failure failure) => ToException(StatusOf(failure.Kind), failure.Code, failure.Detail, failure.RetryAfter);

    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context,
        UnaryServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            return await continuation(request, context);
        }
        catch (Exception exception) when (exception is not RpcException)
        {
            throw Translate(exception, context);
        }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream,
        ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            await continuation(request, responseStream, context);
        }
        catch (Exception exception) when (exception is not RpcException)
        {
            throw Translate(exception, context);
        }
    }

    private RpcException Translate(Exception exception, ServerCallContext context)
    {
        switch (exception)
        {
            case ControlPlaneException refusal:
                return From(refusal.Failure);
            case OperationCanceledException when context.CancellationToken.IsCancellationRequested:
                return new RpcException(new global::Grpc.Core.Status(StatusCode.Cancelled, "The call was cancelled."));
            case OrleansException or TimeoutException or Npgsql.NpgsqlException:
                LogUnavailable(logger, exception, context.Method);
                return ToException(StatusCode.Unavailable, "unavailable", "The cluster could not answer; try again.");
            default:
                LogUnhandled(logger, exception, context.Method);
                return ToException(StatusCode.Internal, "internal_error", "An unexpected error occurred.");
        }
    }

    private static RpcException ToException(StatusCode code, string reason, string detail, TimeSpan? retryAfter = null)
    {
        var status = new Google.Rpc.Status
        {
            Code = (int)code,
            Message = detail,
            Details = { Google.Protobuf.WellKnownTypes.Any.Pack(new ErrorInfo { Reason = reason, Domain = Domain }) },
        };
        if (retryAfter is { } wait)
        {
            status.Details.Add(Google.Protobuf.WellKnownTypes.Any.Pack(new RetryInfo { RetryDelay = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(wait) }));
        }

        return status.ToRpcException();
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Unhandled error serving {Method}")]
    private static partial void LogUnhandled(ILogger logger, Exception exception, string method);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cluster unavailable serving {Method}")]
    private static partial void LogUnavailable(ILogger logger, Exception exception, string method);
}
