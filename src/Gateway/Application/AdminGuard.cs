using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Gateway.Hosting;
using EphemeralOrleans.Grains.Events;
using EphemeralOrleans.Gateway.Telemetry;
using Microsoft.Extensions.Options;

namespace EphemeralOrleans.Gateway.Application;

/// <summary>
/// Every check of the admin key — admin API over HTTP and gRPC, console sign-in, dashboard — goes through here, so a
/// source guessing the key is slowed down everywhere at once: after <see cref="AdminOptions.FailuresBeforeThrottle"/>
/// wrong keys, each further one doubles the wait before that source may try again (1 s, 2 s, … up to
/// <see cref="AdminOptions.MaxThrottle"/>); a throttled source is answered 429 / RESOURCE_EXHAUSTED with the time to
/// wait, without its key being compared. Sources are addresses (IPv6 by /64, which one client owns whole); forwarded
/// headers are not trusted. There is one admin key, so there is no per-account lock: it would let anyone lock the
/// admin out, and others' failures never slow a source that presents the right key.
/// </summary>
public sealed partial class AdminGuard(AdminKey adminKey, IGrainFactory grains, AuditLog auditLog, IOptions<AdminOptions> options, TimeProvider time, ILogger<AdminGuard> logger)
{
    private const int MaxSources = 100_000;

    private readonly ConcurrentDictionary<string, Source> _sources = new(StringComparer.Ordinal);

    /// <summary>Sources the key was used from that the cluster has been told of (so a use costs no call after the first).</summary>
    private readonly ConcurrentDictionary<string, byte> _reported = new(StringComparer.Ordinal);

    private static readonly Failure KeyRequired =
        Failure.Unauthenticated("admin_key_required", "A valid admin API key is required (authorization: Bearer …).");

    /// <summary>Null for the right admin key; otherwise why not — a missing or wrong key (401), or any key from a
    /// throttled source (429, with the wait). Every surface answers it in its own way. <paramref name="surface"/> names
    /// where, for the metric and the log.</summary>
    public Failure? Refusal(string? presented, IPAddress? from, string surface)
    {
        var source = SourceKey(from);
        var now = time.GetUtcNow();
        if (_sources.TryGetValue(source, out var state) && state.Wait(now) is { } wait)
        {
            GatewayMetrics.AdminAuthFailure(surface, "throttled");
            var seconds = (int)Math.Ceiling(wait.TotalSeconds);
            return Failure.Throttled("too_many_attempts", $"Too many wrong admin keys from this address; try again in {seconds} s.", TimeSpan.FromSeconds(seconds));
        }

        if (adminKey.Matches(presented))
        {
            _sources.TryRemove(source, out _);
            ReportUse(source, surface);
            return null;
        }

        if (string.IsNullOrEmpty(presented))
        {
            return KeyRequired; // no key is no guess: refused, not counted
        }

        GatewayMetrics.AdminAuthFailure(surface, "refused");
        if (_sources.Count >= MaxSources)
        {
            Prune(now);
        }

        var updated = _sources.AddOrUpdate(source, _ => new Source().Failed(now, options.Value), (_, s) => s.Failed(now, options.Value));
        // Recorded as they come: a guessing source is throttled, so it gets a handful of these per wait at most.
        Record(EventTypes.AdminSignInFailed, source, surface, updated.Failures);
        if (updated.BlockedUntil > now && updated.Failures == options.Value.FailuresBeforeThrottle + 1)
        {
            LogThrottled(logger, source, surface, updated.Failures);
            Record(EventTypes.AdminThrottled, source, surface, updated.Failures);
        }

        return KeyRequired;
    }

    /// <summary>A console sign-in with the right key (recorded in the admin log).</summary>
    public void SignedIn(IPAddress? from) => Record(EventTypes.AdminSignedIn, SourceKey(from), "console", null);

    /// <summary>Tells the cluster of the first use from <paramref name="source"/> that this gateway sees; the admin access
    /// grain records it if the cluster had not seen it either.</summary>
    private void ReportUse(string source, string surface)
    {
        if (_reported.Count > MaxSources)
        {
            _reported.Clear();
        }

        if (_reported.TryAdd(source, 0))
        {
            _ = ReportAsync();
        }

        async Task ReportAsync()
        {
            try
            {
                await grains.GetGrain<IAdminAccessGrain>(0).Used(source, surface);
            }
            catch (Exception exception)
            {
                _reported.TryRemove(source, out _); // the next use tries again
                LogRecordFailed(logger, exception, EventTypes.AdminNewAddress);
            }
        }
    }

    /// <summary>Appends to the admin log without holding up the caller; a failure is logged (by the audit log), the answer stands.</summary>
    private void Record(string type, string source, string surface, int? failures) =>
        _ = auditLog.RecordAsync(EventLogs.Admin, EventDraft.Create(type, type == EventTypes.AdminSignedIn ? EventActors.Console : "anonymous",
            "admin", null, new { address = source, surface, failures }));

    /// <summary>Who a request comes from, for limits: its address, or an IPv6 address's /64 (one host's whole range).</summary>
    internal static string SourceKey(IPAddress? address)
    {
        if (address is null)
        {
            return "unknown";
        }

        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        if (address.AddressFamily == AddressFamily.InterNetworkV6)
        {
            var bytes = address.GetAddressBytes();
            Array.Clear(bytes, 8, 8);
            return new IPAddress(bytes) + "/64";
        }

        return address.ToString();
    }

    private void Prune(DateTimeOffset now)
    {
        foreach (var (key, state) in _sources)
        {
            if (state.Forgotten(now, options.Value))
            {
                _sources.TryRemove(key, out _);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not record {Type} in the admin log")]
    private static partial void LogRecordFailed(ILogger logger, Exception exception, string type);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Throttling {Source}: {Failures} wrong admin keys ({Surface})")]
    private static partial void LogThrottled(ILogger logger, string source, string surface, int failures);

    private sealed record Source
    {
        public int Failures { get; private init; }

        public DateTimeOffset LastFailure { get; private init; }

        public DateTimeOffset BlockedUntil { get; private init; }

        public TimeSpan? Wait(DateTimeOffset now) => BlockedUntil > now ? BlockedUntil - now : null;

        public bool Forgotten(DateTimeOffset now, AdminOptions options) => now - LastFailure > options.FailureMemory && BlockedUntil <= now;

        public Source Failed(DateTimeOffset now, AdminOptions options)
        {
            var failures = Forgotten(now, options) ? 1 : Failures + 1;
            var beyond = failures - options.FailuresBeforeThrottle;
            var wait = beyond <= 0 ? TimeSpan.Zero : TimeSpan.FromSeconds(Math.Min(Math.Pow(2, Math.Min(beyond - 1, 30)), options.MaxThrottle.TotalSeconds));
            return new Source { Failures = failures, LastFailure = now, BlockedUntil = now + wait };
        }
    }
}
