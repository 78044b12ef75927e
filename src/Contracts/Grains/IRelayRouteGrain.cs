using Orleans.Concurrency;

namespace EphemeralOrleans.Contracts.Grains;

/// <summary>
/// Where one node's relay connection is in the cluster (keyed <c>{tailnet}/{node id}</c>): the gateway that holds it
/// attaches its <see cref="IRelayObserver"/> here, and a gateway with a packet for the node from one of its own agents
/// hands it over here. Kept in memory only: the holding gateway attaches again every minute, which also rebuilds it
/// after a silo failure.
/// </summary>
[Alias("eo.IRelayRouteGrain")]
public interface IRelayRouteGrain : IGrainWithStringKey
{
    /// <summary>Records that the node's relay connection is on <paramref name="gateway"/> (a newer connection elsewhere replaces it).</summary>
    [Alias("Attach")]
    Task Attach(IRelayObserver gateway);

    /// <summary>Forgets <paramref name="gateway"/> if it is still the one holding the node's connection.</summary>
    [Alias("Detach")]
    Task Detach(IRelayObserver gateway);

    /// <summary>Passes packets for the node to the gateway holding its connection; false when none does.</summary>
    [AlwaysInterleave]
    [Alias("Deliver")]
    Task<bool> Deliver(RelayBatch batch);
}

/// <summary>The key of a node's <see cref="IRelayRouteGrain"/>.</summary>
public static class RelayRouteKey
{
    public static string Of(string tailnet, string nodeId) => tailnet + "/" + nodeId;
}

/// <summary>One per gateway process: packets relayed from agents on other gateways to agents connected here.</summary>
[Alias("eo.IRelayObserver")]
public interface IRelayObserver : IGrainObserver
{
    /// <summary>Packets for <see cref="RelayBatch.To"/>, which the sending gateway checked the policy allows.</summary>
    [OneWay]
    [Alias("Deliver")]
    Task Deliver(RelayBatch batch);
}

/// <summary>Relayed packets for one node, in order, each with its sender's node id (already-encrypted WireGuard packets).</summary>
[GenerateSerializer, Immutable, Alias("RelayBatch")]
public sealed record RelayBatch(
    [property: Id(0)] string Tailnet,
    [property: Id(1)] string To,
    [property: Id(2)] string[] From,
    [property: Id(3)] byte[][] Packets);
