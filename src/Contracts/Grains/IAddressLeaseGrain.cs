using EphemeralOrleans.Contracts.Model;

namespace EphemeralOrleans.Contracts.Grains;

/// <summary>
/// The lease on one IPv4 address of a tailnet (key <c>{tailnet}/{address}</c>); the IPv6 address is derived from it.
/// One grain per address keeps allocation free of any tailnet-wide bottleneck and makes it the single authority
/// that prevents two nodes from sharing an address.
/// </summary>
[Alias("eo.IAddressLeaseGrain")]
public interface IAddressLeaseGrain : IGrainWithStringKey
{
    /// <summary>Takes the address for <paramref name="nodeId"/> unless another live node holds it or it is in quarantine.</summary>
    [Alias("Acquire")]
    Task<LeaseOutcome> Acquire(string nodeId);

    /// <summary>Releases the address if <paramref name="nodeId"/> holds it; it stays quarantined for <c>Ephemeral:IpQuarantine</c>.</summary>
    [Alias("Release")]
    Task Release(string nodeId);
}
