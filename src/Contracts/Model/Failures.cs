namespace EphemeralOrleans.Contracts.Model;

/// <summary>Why a control-plane call was refused; maps to an HTTP status and a gRPC status code.</summary>
public enum FailureKind
{
    Invalid,
    Unauthenticated,
    Forbidden,
    NotFound,
    Exhausted,
    Conflict,

    /// <summary>Something the call depends on outside the cluster (an OIDC issuer) did not answer: try again later.</summary>
    Dependency,

    /// <summary>Too many attempts from the caller: try again after the time given.</summary>
    Throttled,
}

/// <summary>A refusal with a stable machine-readable code and a human-readable detail.</summary>
[GenerateSerializer, Immutable, Alias("eo.Failure")]
public sealed record Failure(
    [property: Id(0)] FailureKind Kind,
    [property: Id(1)] string Code,
    [property: Id(2)] string Detail)
{
    public static Failure Invalid(string code, string detail) => new(FailureKind.Invalid, code, detail);
    public static Failure Unauthenticated(string code, string detail) => new(FailureKind.Unauthenticated, code, detail);
    public static Failure Forbidden(string code, string detail) => new(FailureKind.Forbidden, code, detail);
    public static Failure NotFound(string code, string detail) => new(FailureKind.NotFound, code, detail);
    public static Failure Exhausted(string code, string detail) => new(FailureKind.Exhausted, code, detail);
    public static Failure Conflict(string code, string detail) => new(FailureKind.Conflict, code, detail);

    /// <summary>Too many attempts: try again after <paramref name="wait"/> (HTTP <c>Retry-After</c>, gRPC <c>RetryInfo</c>).</summary>
    public static Failure Throttled(string code, string detail, TimeSpan wait) => new(FailureKind.Throttled, code, detail) { RetryAfter = wait };

    /// <summary>When the caller may try again, for <see cref="FailureKind.Throttled"/>.</summary>
    [Id(3)]
    public TimeSpan? RetryAfter { get; init; }
}

/// <summary>Thrown by the application layer; the transports turn it into problem+json or a gRPC status.</summary>
public sealed class ControlPlaneException(Failure failure) : Exception(failure.Detail)
{
    public Failure Failure { get; } = failure;
}
