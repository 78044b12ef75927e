using System.Collections.Concurrent;
using EphemeralOrleans.Contracts.Grains;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace EphemeralOrleans.Grains.Sessions;

/// <summary>The node grains active on this silo that have open sessions (they add and remove themselves).</summary>
public sealed class ConnectedNodes
{
    private readonly ConcurrentDictionary<string, byte> _grainKeys = new(StringComparer.Ordinal);

    public void Set(string grainKey, bool connected)
    {
        if (connected)
        {
            _grainKeys.TryAdd(grainKey, 0);
        }
        else
        {
            _grainKeys.TryRemove(grainKey, out _);
        }
    }

    public IReadOnlyCollection<string> GrainKeys => _grainKeys.Keys.ToArray();
}

/// <summary>
/// When another silo dies, it may have taken gateways' session leases with it; a gateway restores its lease at its next
/// renewal, but should the gateway be gone too, nothing would ever lapse the sessions it held. So each node here with
/// open sessions asks its leases again (<see cref="INodeGrain.ConfirmSessions"/>): once per silo failure, never per keepalive.
/// </summary>
public sealed partial class SessionConfirmer(
    IClusterMembershipService membership,
    ILocalSiloDetails silo,
    ConnectedNodes connected,
    IGrainFactory grains,
    ILogger<SessionConfirmer> logger) : BackgroundService
{
    private const int Parallel = 64;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        ClusterMembershipSnapshot? previous = null;
        try
        {
            await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(stoppingToken))
            {
                var died = previous is null ? [] : snapshot.CreateUpdate(previous).Changes
                    .Where(m => m.Status == SiloStatus.Dead && !m.SiloAddress.Equals(silo.SiloAddress)).ToArray();
                previous = snapshot;
                if (died.Length > 0)
                {
                    await ConfirmAllAsync(string.Join(", ", died.Select(m => m.SiloAddress)), stoppingToken);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task ConfirmAllAsync(string died, CancellationToken cancellationToken)
    {
        var keys = connected.GrainKeys;
        LogConfirming(died, keys.Count);
        var failed = 0;
        await System.Threading.Tasks.Parallel.ForEachAsync(keys, new ParallelOptions { MaxDegreeOfParallelism = Parallel, CancellationToken = cancellationToken },
            async (key, _) =>
            {
                try
                {
                    await grains.GetGrain<INodeGrain>(key).ConfirmSessions();
                }
                catch (Exception exception) when (exception is not OperationCanceledException)
                {
                    if (Interlocked.Increment(ref failed) == 1)
                    {
                        LogConfirmFailed(exception, key);
                    }
                }
            });
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Silo {Died} died: {Nodes} connected nodes here confirm their sessions with their gateways' leases")]
    private partial void LogConfirming(string died, int nodes);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Node grain {GrainKey} could not confirm its sessions (others may have failed too)")]
    private partial void LogConfirmFailed(Exception exception, string grainKey);
}
