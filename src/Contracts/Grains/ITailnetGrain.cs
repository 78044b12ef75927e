using EphemeralOrleans.Contracts.Model;
using Orleans.Concurrency;

namespace EphemeralOrleans.Contracts.Grains;

/// <summary>
/// A tailnet: its settings, the ids of its auth keys, and the registry of its nodes (in memory, persisted by group
/// commit) from which netmaps are built. Changes go out in batches to one observer per gateway process.
/// </summary>
[Alias("eo.ITailnetGrain")]
public interface ITailnetGrain : IGrainWithStringKey
{
    /// <summary>The tailnet's settings.</summary>
    [ReadOnly, AlwaysInterleave]
    [Alias("GetSettings")]
    Task<TailnetSettings> GetSettings();

    /// <summary>Changes the settings; null leaves a value as it is.</summary>
    [Alias("UpdateSettings")]
    Task<TailnetSettings> UpdateSettings(bool? deviceApproval);

    /// <summary>The tailnet's ACL policy as validated, normalized JSON; null when none was ever set (everyone sees everyone).</summary>
    [Alias("GetPolicy")]
    Task<string?> GetPolicy();

    /// <summary>Replaces the policy with <paramref name="policyJson"/>, which the caller has validated
    /// (<see cref="Policy.PolicyDocument"/>). Completes once it is durable.</summary>
    [Alias("SetPolicy")]
    Task SetPolicy(string policyJson);

    /// <summary>Records a key id as belonging to this tailnet (before the key grain is created).</summary>
    [Alias("AddKey")]
    Task AddKey(string keyId);

    /// <summary>The ids of every key created in this tailnet.</summary>
    [ReadOnly]
    [Alias("ListKeyIds")]
    Task<string[]> ListKeyIds();

    /// <summary>Adds or updates a node; returns its name, unique in the tailnet. A node the registry holds keeps the name
    /// it has there (the record's own is not read); one it does not hold gets <paramref name="nameHint"/> if that is
    /// free (the name it had, should the registry have lost it), else one made from its hostname. Completes once the
    /// registry entry is durable.</summary>
    [Alias("Upsert")]
    Task<string> Upsert(NodeEntry node, string? nameHint = null);

    /// <summary>Tells the registry that a newly added node is stored; entries never confirmed are checked with their node.</summary>
    [OneWay]
    [Alias("Confirm")]
    Task Confirm(string nodeId);

    /// <summary>Removes a node from the registry (idempotent). A node's own removal says why (<paramref name="reason"/>)
    /// and, for inactivity, how late past its deadline (<paramref name="lag"/>): counted once, for <see cref="GetCounts"/>.</summary>
    [Alias("Remove")]
    Task Remove(string nodeId, RemovalReason? reason = null, TimeSpan? lag = null);

    /// <summary>Renames a node the registry holds, if no other node has <paramref name="name"/>; peers learn it as a change.</summary>
    [Alias("Rename")]
    Task<RenameOutcome> Rename(string nodeId, string name);

    /// <summary>The tailnet's trust policies (workload identity), oldest first.</summary>
    [ReadOnly, AlwaysInterleave]
    [Alias("ListTrustPolicies")]
    Task<TrustPolicy[]> ListTrustPolicies();

    /// <summary>Adds or replaces a trust policy (by id). Completes once it is durable.</summary>
    [Alias("PutTrustPolicy")]
    Task PutTrustPolicy(TrustPolicy policy);

    /// <summary>Deletes a trust policy: no new registrations through it; its nodes stay. False when there was none.</summary>
    [Alias("DeleteTrustPolicy")]
    Task<bool> DeleteTrustPolicy(string policyId);

    /// <summary>Every node of the tailnet.</summary>
    [ReadOnly]
    [Alias("GetSnapshot")]
    Task<TailnetSnapshot> GetSnapshot();

    /// <summary>How many nodes the tailnet has, by state: what gateways export as metrics, without a copy of the nodes.</summary>
    [ReadOnly, AlwaysInterleave]
    [Alias("GetCounts")]
    Task<TailnetCounts> GetCounts();

    /// <summary>Subscribes (or renews) a gateway's observer; returns a snapshot unless <paramref name="knownVersion"/> is current.</summary>
    [Alias("Subscribe")]
    Task<TailnetSnapshot?> Subscribe(IMapObserver observer, long knownVersion);

    /// <summary>Removes a gateway's observer.</summary>
    [Alias("Unsubscribe")]
    Task Unsubscribe(IMapObserver observer);
}

/// <summary>One per gateway process: receives a tailnet's change batches and fans them out to local map streams.</summary>
[Alias("eo.IMapObserver")]
public interface IMapObserver : IGrainObserver
{
    /// <summary>A batch of changes to a tailnet's registry.</summary>
    [OneWay]
    [Alias("OnChanges")]
    Task OnChanges(TailnetChanges changes);
}
