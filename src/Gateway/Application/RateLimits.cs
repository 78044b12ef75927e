using System.Globalization;
using System.Net;
using System.Threading.RateLimiting;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Gateway.Grpc;
using EphemeralOrleans.Gateway.Http;
using EphemeralOrleans.Gateway.Telemetry;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.Options;

namespace EphemeralOrleans.Gateway.Application;

/// <summary><c>RateLimits:*</c>: token buckets (a rate per second and a burst) per source address — an IPv6 /64 — for
/// each kind of request that costs the cluster work, and per auth key or trust policy for registrations.</summary>
public sealed class RateLimitOptions
{
    public const string Section = "RateLimits";

    /// <summary>Off: no limit at all (benchmarks).</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>Registrations per second from one source (a NAT in front of a CI fleet is one source: generous).</summary>
    public int RegistrationsPerSecond { get; set; } = 100;
    public int RegistrationBurst { get; set; } = 500;

    /// <summary>Registrations per second with one auth key or trust policy, from anywhere.</summary>
    public int RegistrationsPerKeyPerSecond { get; set; } = 500;
    public int RegistrationBurstPerKey { get; set; } = 2000;

    /// <summary>Map streams opened per second from one source; the burst lets a NAT's fleet reconnect at once after a
    /// gateway restart.</summary>
    public int MapOpensPerSecond { get; set; } = 100;
    public int MapOpenBurst { get; set; } = 1000;

    /// <summary>Admin API requests (HTTP and gRPC) per second from one source.</summary>
    public int AdminRequestsPerSecond { get; set; } = 50;
    public int AdminBurst { get; set; } = 200;

    /// <summary>Map streams one node may hold open on one gateway at once (its agent needs one; a stolen token gets no more).</summary>
    public int MaxStreamsPerNode { get; set; } = 8;
}

/// <summary>
/// The gateway's flood limits, for HTTP and gRPC alike: a global partitioned limiter in front of the endpoints (by kind
/// of request and source), the per-key registration limit the control plane applies once it knows the key, and the
/// count of each node's open streams. A refused request is answered 429 with <c>Retry-After</c> (gRPC:
/// RESOURCE_EXHAUSTED with <c>google.rpc.RetryInfo</c>) before anything reaches the cluster, and counted in
/// <c>eo_gateway_rate_limited_total{limit}</c>.
/// </summary>
public sealed class RateLimits : IDisposable
{
    private readonly RateLimitOptions _options;
    private readonly PartitionedRateLimiter<string> _perKey;
    private readonly Dictionary<string, int> _streams = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    public RateLimits(IOptions<RateLimitOptions> options)
    {
        _options = options.Value;
        _perKey = PartitionedRateLimiter.Create<string, string>(key => RateLimitPartition.GetTokenBucketLimiter(key,
            _ => Bucket(_options.RegistrationsPerKeyPerSecond, _options.RegistrationBurstPerKey)));
    }

    /// <summary>Installs the per-source limits: registration, map-stream opening and the admin API, over both transports.</summary>
    public static void Configure(RateLimiterOptions limiter, RateLimitOptions options)
    {
        limiter.GlobalLimiter = PartitionedRateLimiter.Create<HttpContext, string>(context =>
        {
            var kind = options.Enabled ? KindOf(context.Request.Path) : null;
            return kind switch
            {
                "registration" => Partition(kind, context, options.RegistrationsPerSecond, options.RegistrationBurst),
                "map" => Partition(kind, context, options.MapOpensPerSecond, options.MapOpenBurst),
                "admin" => Partition(kind, context, options.AdminRequestsPerSecond, options.AdminBurst),
                _ => RateLimitPartition.GetNoLimiter(""),
            };
        });
        limiter.OnRejected = async (rejected, cancellationToken) =>
        {
            var context = rejected.HttpContext;
            var kind = KindOf(context.Request.Path) ?? "other";
            GatewayMetrics.RateLimited(kind);
            var wait = rejected.Lease.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter) && retryAfter > TimeSpan.Zero ? retryAfter : TimeSpan.FromSeconds(1);
            var failure = Failure.Throttled("too_many_requests", $"Too many {Describe(kind)} from this address; try again in {Math.Ceiling(wait.TotalSeconds)} s.", wait);
            if (context.Request.ContentType?.StartsWith("application/grpc", StringComparison.Ordinal) == true)
            {
                // A trailers-only gRPC answer: the status, and its details as the gRPC libraries read them.
                var exception = GrpcErrors.From(failure);
                context.Response.StatusCode = StatusCodes.Status200OK;
                context.Response.ContentType = "application/grpc";
                context.Response.Headers["grpc-status"] = ((int)exception.StatusCode).ToString(CultureInfo.InvariantCulture);
                context.Response.Headers["grpc-message"] = Uri.EscapeDataString(exception.Status.Detail);
                if (exception.Trailers.GetValueBytes("grpc-status-details-bin") is { } details)
                {
                    context.Response.Headers["grpc-status-details-bin"] = Convert.ToBase64String(details).TrimEnd('=');
                }

                return;
            }

            context.Response.StatusCode = StatusCodes.Status429TooManyRequests;
            context.Response.Headers.RetryAfter = Math.Ceiling(wait.TotalSeconds).ToString(CultureInfo.InvariantCulture);
            await Problems.From(failure).ExecuteAsync(context);
        };
    }

    /// <summary>Null when a registration with key (or trust policy) <paramref name="keyId"/> may go ahead; else why not.</summary>
    public Failure? RegistrationRefusal(string keyId)
    {
        if (!_options.Enabled)
        {
            return null;
        }

        using var lease = _perKey.AttemptAcquire(keyId);
        if (lease.IsAcquired)
        {
            return null;
        }

        GatewayMetrics.RateLimited("registration_key");
        var wait = lease.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter) && retryAfter > TimeSpan.Zero ? retryAfter : TimeSpan.FromSeconds(1);
        return Failure.Throttled("too_many_requests", $"Too many registrations with this key; try again in {Math.Ceiling(wait.TotalSeconds)} s.", wait);
    }

    /// <summary>Counts a stream of <paramref name="nodeId"/> opened; null when the node already holds its maximum here
    /// (then nothing is counted). Dispose the result when the stream ends.</summary>
    public IDisposable? OpenStream(string nodeId)
    {
        lock (_lock)
        {
            var open = _streams.GetValueOrDefault(nodeId);
            if (_options.Enabled && open >= _options.MaxStreamsPerNode)
            {
                GatewayMetrics.RateLimited("streams_per_node");
                return null;
            }

            _streams[nodeId] = open + 1;
        }

        return new StreamCount(this, nodeId);
    }

    public void Dispose() => _perKey.Dispose();

    private void CloseStream(string nodeId)
    {
        lock (_lock)
        {
            if (_streams.TryGetValue(nodeId, out var open) && open > 1)
            {
                _streams[nodeId] = open - 1;
            }
            else
            {
                _streams.Remove(nodeId);
            }
        }
    }

    private sealed class StreamCount(RateLimits limits, string nodeId) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                limits.CloseStream(nodeId);
            }
        }
    }

    private static string? KindOf(PathString path) => path.Value switch
    {
        "/api/v1/machine/register" or "/ephemeral.v1.ControlService/Register" => "registration",
        "/api/v1/machine/map" or "/ephemeral.v1.ControlService/Map" => "map",
        { } p when p.StartsWith("/api/v1/tailnets/", StringComparison.Ordinal) || p.StartsWith("/api/v1/admin/", StringComparison.Ordinal)
            || p.StartsWith("/ephemeral.v1.AdminService/", StringComparison.Ordinal) => "admin",
        _ => null,
    };

    private static string Describe(string kind) => kind switch
    {
        "registration" => "registrations",
        "map" => "map streams opened",
        "admin" => "admin requests",
        _ => "requests",
    };

    private static RateLimitPartition<string> Partition(string kind, HttpContext context, int perSecond, int burst) =>
        RateLimitPartition.GetTokenBucketLimiter($"{kind}|{AdminGuard.SourceKey(context.Connection.RemoteIpAddress)}", _ => Bucket(perSecond, burst));

    private static TokenBucketRateLimiterOptions Bucket(int perSecond, int burst) => new()
    {
        TokenLimit = Math.Max(1, burst),
        // A tenth of the rate every tenth of a second: a refused client waits about that long, not a whole second.
        TokensPerPeriod = Math.Max(1, perSecond / 10),
        ReplenishmentPeriod = TimeSpan.FromMilliseconds(perSecond >= 10 ? 100 : 1000 / Math.Max(1, perSecond)),
        QueueLimit = 0,
        AutoReplenishment = true,
    };
}
