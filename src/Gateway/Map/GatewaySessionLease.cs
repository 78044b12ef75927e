using System.Collections.Concurrent;
using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Options;
using Microsoft.Extensions.Options;

namespace EphemeralOrleans.Gateway.Map;

/// <summary>
/// This gateway host's one session lease (<see cref="ISessionLeaseGrain"/>): a node stays online while its stream is
/// open here because this process renews one lease, with one grain call per <see cref="EphemeralOptions.SessionHeartbeat"/>
/// — not one heartbeat per stream. Killed, it stops renewing, and its nodes go offline a lease later. It keeps the streams
/// it serves, so that a lease that lost them (its silo failed, or the cluster was out of reach for longer than a lease)
/// is restored at the next renewal.
/// </summary>
public sealed partial class GatewaySessionLease(IGrainFactory grains, IOptions<EphemeralOptions> ephemeralOptions,
    ILogger<GatewaySessionLease> logger) : BackgroundService
{
    private readonly EphemeralOptions _options = ephemeralOptions.Value;

    /// <summary>Open streams: stream id → (node id, when it was added, in <see cref="_added"/>'s order).</summary>
    private readonly ConcurrentDictionary<string, (string NodeId, long Order)> _streams = new(StringComparer.Ordinal);
    private long _added;

    /// <summary>This process's lease: unique per start, so a restarted gateway never renews its predecessor's.</summary>
    public string Id { get; } = $"{Environment.MachineName}-{Environment.ProcessId}-{Guid.NewGuid():N}";

    private ISessionLeaseGrain Lease => grains.GetGrain<ISessionLeaseGrain>(Id);

    /// <summary>Counts a stream as served here; before its node opens the session, so that a restore includes it.</summary>
    public void Add(string nodeId, string streamId) => _streams[streamId] = (nodeId, Interlocked.Increment(ref _added));

    /// <summary>The stream ended here (its node's session is closed by the caller).</summary>
    public void Remove(string streamId) => _streams.TryRemove(streamId, out _);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(_options.SessionHeartbeat);
        var failingSince = (DateTimeOffset?)null;
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    // Bounded: a call queued behind a dead silo's connection can hang for Orleans' response timeout.
                    if (!await Lease.Renew().WaitAsync(_options.SessionLease, stoppingToken))
                    {
                        await RestoreAsync(stoppingToken);
                    }

                    if (failingSince is { } since)
                    {
                        LogRenewalRecovered(DateTimeOffset.UtcNow - since);
                        failingSince = null;
                    }
                }
                catch (Exception exception) when (!stoppingToken.IsCancellationRequested)
                {
                    // The cluster may be recovering: the streams stay open (keepalives to agents go on), and the next
                    // renewal restores the lease if it lapsed meanwhile.
                    if (failingSince is null)
                    {
                        failingSince = DateTimeOffset.UtcNow;
                        LogRenewalFailed(exception, Id);
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Replaces the lease's streams with those open here, then adds those that opened meanwhile (a node may
    /// have held its stream at the lease before the replacement arrived).</summary>
    private async Task RestoreAsync(CancellationToken cancellationToken)
    {
        var upTo = Interlocked.Read(ref _added);
        var open = _streams.ToArray();
        LogRestoring(Id, open.Length);
        await Lease.Restore(Held(open), replace: true).WaitAsync(cancellationToken);
        var since = _streams.Where(s => s.Value.Order > upTo).ToArray();
        if (since.Length > 0)
        {
            await Lease.Restore(Held(since), replace: false).WaitAsync(cancellationToken);
        }

        static ValueList<HeldStream> Held(KeyValuePair<string, (string NodeId, long Order)>[] streams) =>
            new(streams.Select(s => new HeldStream(s.Value.NodeId, s.Key)));
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Renewing the session lease {LeaseId} is failing; the streams stay open")]
    private partial void LogRenewalFailed(Exception exception, string leaseId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Session lease renewals are getting through again after {Outage}")]
    private partial void LogRenewalRecovered(TimeSpan outage);

    [LoggerMessage(Level = LogLevel.Information, Message = "Session lease {LeaseId} lost its streams (restart or lapse): restoring {Streams}")]
    private partial void LogRestoring(string leaseId, int streams);
}
