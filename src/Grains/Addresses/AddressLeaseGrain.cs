using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Options;
using EphemeralOrleans.Contracts.Validation;
using EphemeralOrleans.Grains.Common;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace EphemeralOrleans.Grains.Addresses;

[GenerateSerializer, Alias("eo.AddressLeaseState")]
public sealed class AddressLeaseState
{
    [Id(0)] public string? Holder { get; set; }
    [Id(1)] public DateTimeOffset? ReleasedAt { get; set; }
}

/// <summary>
/// The single authority over one address. A lease whose holder does not hold it any more (a crash between the steps of
/// a registration or a removal) is reclaimed the moment someone else wants the address, after the quarantine.
/// </summary>
public sealed partial class AddressLeaseGrain(
    [PersistentState("lease", StorageNames.State)] IPersistentState<AddressLeaseState> lease,
    IGrainFactory grains,
    IOptions<EphemeralOptions> options,
    TimeProvider time,
    ILogger<AddressLeaseGrain> logger) : Grain, IAddressLeaseGrain
{
    public async Task<LeaseOutcome> Acquire(string nodeId)
    {
        var state = lease.State;
        if (state.Holder == nodeId)
        {
            return LeaseOutcome.Acquired;
        }

        if (state.Holder is { } holder)
        {
            if (await HolderStillHoldsAsync(holder))
            {
                return LeaseOutcome.Taken;
            }

            // The holder never finished taking it, or was removed without releasing it.
            LogReclaimed(this.GetPrimaryKeyString(), holder);
            state.Holder = null;
            state.ReleasedAt = time.GetUtcNow();
            await lease.WriteStateAsync();
            return LeaseOutcome.Quarantined;
        }

        if (state.ReleasedAt is { } released && time.GetUtcNow() < released + options.Value.IpQuarantine)
        {
            return LeaseOutcome.Quarantined;
        }

        state.Holder = nodeId;
        await lease.WriteStateAsync();
        return LeaseOutcome.Acquired;
    }

    public async Task Release(string nodeId)
    {
        if (lease.State.Holder == nodeId)
        {
            lease.State.Holder = null;
            lease.State.ReleasedAt = time.GetUtcNow();
            await lease.WriteStateAsync();
        }
    }

    private async Task<bool> HolderStillHoldsAsync(string holder)
    {
        if (!NodeIds.TryGrainKey(holder, out var grainKey) || !AddressPool.TryParseLeaseKey(this.GetPrimaryKeyString(), out _, out var address))
        {
            return false;
        }

        try
        {
            return await grains.GetGrain<INodeGrain>(grainKey).HoldsAddress(holder, address);
        }
        catch (Exception exception) when (exception is not OperationCanceledException)
        {
            // Unknown is treated as held: a lease is never taken from a node that might still have it.
            LogHolderUnknown(exception, this.GetPrimaryKeyString(), holder);
            return true;
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Lease {Lease} reclaimed from {NodeId}, which does not hold it")]
    private partial void LogReclaimed(string lease, string nodeId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Lease {Lease}: could not ask holder {NodeId}; treating it as held")]
    private partial void LogHolderUnknown(Exception exception, string lease, string nodeId);
}
