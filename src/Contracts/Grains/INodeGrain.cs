using EphemeralOrleans.Contracts.Model;
using Orleans.Concurrency;

namespace EphemeralOrleans.Contracts.Grains;

/// <summary>
/// One device of a tailnet, keyed by <see cref="Validation.NodeIds.GrainKeyFor"/> of its tailnet and node key, so a
/// re-registration of the same node key lands on the same grain. Node ids start with that key and end with a random
/// suffix, so a removed node's id is never reused.
/// </summary>
[Alias("eo.INodeGrain")]
public interface INodeGrain : IGrainWithStringKey
{
    /// <summary>Registers the node (or re-registers it with a new token) under an already redeemed key.</summary>
    [Alias("Register")]
    Task<RegisterResult> Register(RegisterCommand command);

    /// <summary>Opens a map session for stream <paramref name="streamId"/> if the token is valid, held by the gateway whose
    /// session lease is <paramref name="leaseId"/> (see <see cref="ISessionLeaseGrain"/>); the node is online while any
    /// session lives.</summary>
    [Alias("OpenSession")]
    Task<SessionInfo?> OpenSession(string nodeId, string tokenSecret, string streamId, string leaseId);

    /// <summary>Closes a session (and releases it from its gateway's lease, <paramref name="leaseId"/>); with none left
    /// the node is offline and its inactivity clock starts.</summary>
    [Alias("CloseSession")]
    Task CloseSession(string streamId, string leaseId);

    /// <summary>The gateway lease <paramref name="leaseId"/> lapsed (its gateway stopped renewing it): the sessions it held
    /// are over, none of them later than <paramref name="since"/>.</summary>
    [Alias("SessionsLapsed")]
    Task SessionsLapsed(string leaseId, DateTimeOffset since);

    /// <summary>The gateway lease <paramref name="leaseId"/> restored after a restart or a lapse: these streams are open.</summary>
    [Alias("Reattach")]
    Task Reattach(string leaseId, ValueList<string> streamIds);

    /// <summary>Asks the leases of the node's sessions whether they still hold them (after a silo failure, which may have
    /// taken a lease with it).</summary>
    [Alias("ConfirmSessions")]
    Task ConfirmSessions();

    /// <summary>Logs the node out: an ephemeral node is removed at once, another stays listed as logged out. False for a bad token.
    /// <paramref name="agentExit"/>: the agent logs out because it exits (<c>--state mem:</c>), which the audit log records.</summary>
    [Alias("Logout")]
    Task<bool> Logout(string nodeId, string tokenSecret, bool agentExit);

    /// <summary>Replaces the UDP endpoints the node's WireGuard listens on (validated by the caller); an authenticated
    /// agent call, so it counts as activity. Null for a bad token.</summary>
    [Alias("SetEndpoints")]
    Task<NodeEntry?> SetEndpoints(string nodeId, string tokenSecret, ValueList<System.Net.IPEndPoint> endpoints);

    /// <summary>The node, when <paramref name="tokenSecret"/> is its current token (not logged out); else null. No side effects.</summary>
    [AlwaysInterleave]
    [Alias("Authenticate")]
    Task<NodeEntry?> Authenticate(string nodeId, string tokenSecret);

    /// <summary>Removes the node at once (admin). False when no such node exists.</summary>
    [Alias("Delete")]
    Task<bool> Delete(string nodeId);

    /// <summary>Ends the node's credentials (admin), as a logout would: an ephemeral node is removed at once, another
    /// stays listed as logged out and must register again. False when no such node exists.</summary>
    [Alias("Expire")]
    Task<bool> Expire(string nodeId);

    /// <summary>Gives the node another name (admin; validated by the caller), unique in its tailnet. Null when no such
    /// node exists.</summary>
    [Alias("Rename")]
    Task<RenameResult?> Rename(string nodeId, string name);

    /// <summary>Marks the node authorized (admin). Null when no such node exists.</summary>
    [Alias("Approve")]
    Task<NodeEntry?> Approve(string nodeId);

    /// <summary>The node as it is now, or null when <paramref name="nodeId"/> is not this grain's current node.</summary>
    [AlwaysInterleave]
    [Alias("GetEntry")]
    Task<NodeEntry?> GetEntry(string nodeId);

    /// <summary>Whether this grain's node holds, or is in the middle of taking, <paramref name="ipv4"/>; used to reclaim stale leases.</summary>
    [AlwaysInterleave]
    [Alias("HoldsAddress")]
    Task<bool> HoldsAddress(string nodeId, uint ipv4);
}
