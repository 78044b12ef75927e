using EphemeralOrleans.Contracts.Model;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Mvc;

namespace EphemeralOrleans.Gateway.Http;

/// <summary>RFC 7807 problems: every refusal and failure of the HTTP API ends up here.</summary>
public static partial class Problems
{
    public static int StatusOf(FailureKind kind) => kind switch
    {
        FailureKind.Invalid => StatusCodes.Status400BadRequest,
        FailureKind.Unauthenticated => StatusCodes.Status401Unauthorized,
        FailureKind.Forbidden => StatusCodes.Status403Forbidden,
        FailureKind.NotFound => StatusCodes.Status404NotFound,
        FailureKind.Exhausted => StatusCodes.Status503ServiceUnavailable,
        FailureKind.Conflict => StatusCodes.Status409Conflict,
        FailureKind.Dependency => StatusCodes.Status424FailedDependency,
        FailureKind.Throttled => StatusCodes.Status429TooManyRequests,
        _ => StatusCodes.Status500InternalServerError,
    };

    public static IResult From(Failure failure) => failure.RetryAfter is { } wait
        ? new WithRetryAfter(Problem(StatusOf(failure.Kind), failure.Code, failure.Detail), wait)
        : Problem(StatusOf(failure.Kind), failure.Code, failure.Detail);

    /// <summary>A problem that says when to try again.</summary>
    private sealed class WithRetryAfter(IResult problem, TimeSpan wait) : IResult
    {
        public Task ExecuteAsync(HttpContext context)
        {
            context.Response.Headers.RetryAfter = ((int)Math.Ceiling(wait.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
            return problem.ExecuteAsync(context);
        }
    }

    public static IResult Problem(int status, string code, string detail) => Results.Problem(
        statusCode: status,
        title: code.Replace('_', ' '),
        detail: detail,
        type: $"urn:ephemeral-orleans:problem:{code}",
        extensions: new Dictionary<string, object?> { ["code"] = code });

    /// <summary>Turns what escaped an endpoint into a problem: refusals keep their status, a cluster that cannot answer is 503, the rest 500.</summary>
    public static async ValueTask<bool> HandleAsync(HttpContext context, Exception exception, ILogger logger)
    {
        var result = exception switch
        {
            ControlPlaneException refusal => From(refusal.Failure),
            BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge } =>
                Problem(StatusCodes.Status413PayloadTooLarge, "body_too_large", "The request body is too large."),
            BadHttpRequestException bad => Problem(bad.StatusCode, "bad_request", "The request could not be read."),
            OrleansException or TimeoutException or Npgsql.NpgsqlException =>
                Problem(StatusCodes.Status503ServiceUnavailable, "unavailable", "The cluster could not answer; try again."),
            _ => null,
        };
        if (result is null)
        {
            LogUnhandled(logger, exception, context.Request.Path);
            result = Problem(StatusCodes.Status500InternalServerError, "internal_error", "An unexpected error occurred.");
        }
        else if (result is IStatusCodeHttpResult { StatusCode: >= 500 })
        {
            LogUnavailable(logger, exception, context.Request.Path);
        }

        if (!context.Response.HasStarted)
        {
            await result.ExecuteAsync(context);
        }

        return true;
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Unhandled error serving {Path}")]
    private static partial void LogUnhandled(ILogger logger, Exception exception, string path);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cluster unavailable serving {Path}")]
    private static partial void LogUnavailable(ILogger logger, Exception exception, string path);
}

/// <summary>Registered with <c>AddExceptionHandler</c>.</summary>
internal sealed class ProblemExceptionHandler(ILogger<ProblemExceptionHandler> logger) : IExceptionHandler
{
    public ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken) =>
        Problems.HandleAsync(httpContext, exception, logger);
}
