using EphemeralOrleans.Contracts.Grains;
using Orleans.Concurrency;

namespace EphemeralOrleans.Grains.Relay;

/// <summary>
/// One node's relay route (see <see cref="IRelayRouteGrain"/>): the observer of the gateway holding its connection.
/// Nothing is stored — a connection lives only as long as its gateway process, which attaches again every minute.
/// Deliveries interleave and go on one-way: a gateway that died takes no packet with it but its own.
/// </summary>
[Reentrant]
public sealed class RelayRouteGrain : Grain, IRelayRouteGrain
{
    private IRelayObserver? _gateway;

    public Task Attach(IRelayObserver gateway)
    {
        _gateway = gateway;
        return Task.CompletedTask;
    }

    public Task Detach(IRelayObserver gateway)
    {
        if (Equals(_gateway, gateway))
        {
            _gateway = null;
            DeactivateOnIdle();
        }

        return Task.CompletedTask;
    }

    public Task<bool> Deliver(RelayBatch batch)
    {
        if (_gateway is not { } gateway)
        {
            return Task.FromResult(false);
        }

        _ = gateway.Deliver(batch); // one-way
        return Task.FromResult(true);
    }
}
