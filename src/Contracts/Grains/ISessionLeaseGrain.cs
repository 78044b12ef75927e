using EphemeralOrleans.Contracts.Model;

namespace EphemeralOrleans.Contracts.Grains;

/// <summary>
/// One gateway host's lease on every map session it serves, keyed by the host's lease id (one per gateway process).
/// The gateway renews it with one call per <see cref="Options.EphemeralOptions.SessionHeartbeat"/>, however many streams it
/// holds; nodes register each session with it on opening and release it on closing. Should the renewals stop for a
/// <see cref="Options.EphemeralOptions.SessionLease"/> (the gateway died), the lease lapses and tells every node it
/// holds. In memory only: after its silo fails, the gateway's next renewal finds it empty and restores it.
/// </summary>
[Alias("eo.ISessionLeaseGrain")]
public interface ISessionLeaseGrain : IGrainWithStringKey
{
    /// <summary>Holds <paramref name="streamId"/> of <paramref name="nodeId"/> (the node calls it before counting the
    /// session as open, so that a lapse always reaches it).</summary>
    [Alias("Hold")]
    Task Hold(string nodeId, string streamId);

    /// <summary>Lets go of a closed stream.</summary>
    [Alias("Release")]
    Task Release(string streamId);

    /// <summary>The gateway's keepalive. False when this lease does not know the gateway's streams (it restarted, or
    /// lapsed while the gateway could not reach it): the gateway then calls <see cref="Restore"/>.</summary>
    [Alias("Renew")]
    Task<bool> Renew();

    /// <summary>Replaces what the lease holds with the gateway's open streams (<paramref name="replace"/>), or adds to it,
    /// and tells each of their nodes that its sessions stand.</summary>
    [Alias("Restore")]
    Task Restore(ValueList<HeldStream> streams, bool replace);

    /// <summary>The streams held for <paramref name="nodeId"/>; null when this lease cannot tell yet (it restarted less
    /// than a lease ago and its gateway has not restored it).</summary>
    [Alias("Held")]
    Task<string[]?> Held(string nodeId);
}

/// <summary>A map stream a gateway serves, and the node it belongs to.</summary>
[GenerateSerializer, Immutable, Alias("held-stream")]
public sealed record HeldStream([property: Id(0)] string NodeId, [property: Id(1)] string StreamId);
