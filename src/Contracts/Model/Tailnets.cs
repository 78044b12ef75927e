using EphemeralOrleans.Contracts.Policy;

namespace EphemeralOrleans.Contracts.Model;

/// <summary>Per-tailnet settings operators change through the admin API.</summary>
[GenerateSerializer, Immutable, Alias("eo.TailnetSettings")]
public sealed record TailnetSettings([property: Id(0)] bool DeviceApproval);

/// <summary>How many nodes a tailnet has: all, online, ephemeral, and waiting for approval; and since its registry
/// was activated, the nodes removed by reason (<see cref="Removals"/>, indexed by <see cref="RemovalReason"/>) and how
/// late inactivity removals came past their deadline (<see cref="RemovalLagCounts"/>: one count per bucket of
/// <see cref="Telemetry.RemovalLagBuckets"/>, then the rest).</summary>
[GenerateSerializer, Immutable, Alias("TailnetCounts")]
public sealed record TailnetCounts(
    [property: Id(0)] int Total,
    [property: Id(1)] int Online,
    [property: Id(2)] int Ephemeral,
    [property: Id(3)] int PendingApproval)
{
    [Id(4)]
    public long[] Removals { get; init; } = [];

    [Id(5)]
    public long[] RemovalLagCounts { get; init; } = [];
}

/// <summary>Every node of a tailnet at one registry version.</summary>
[GenerateSerializer, Immutable, Alias("eo.TailnetSnapshot")]
public sealed record TailnetSnapshot(
    [property: Id(0)] string Tailnet,
    [property: Id(1)] long Version,
    [property: Id(2)] NodeEntry[] Nodes)
{
    /// <summary>The tailnet's policy (validated JSON); null for none (everyone sees everyone).</summary>
    [Id(3)]
    public string? PolicyJson { get; init; }
}

/// <summary>One coalesced batch of registry changes; <see cref="PreviousVersion"/> lets a receiver detect a gap.</summary>
[GenerateSerializer, Immutable, Alias("eo.TailnetChanges")]
public sealed record TailnetChanges(
    [property: Id(0)] string Tailnet,
    [property: Id(1)] long PreviousVersion,
    [property: Id(2)] long Version,
    [property: Id(3)] NodeEntry[] Changed,
    [property: Id(4)] string[] Removed)
{
    /// <summary>When the first change of this batch was made (by the silo's clock): the start of change-to-delivery latency.</summary>
    [Id(5)]
    public DateTimeOffset FirstChangeAt { get; init; }

    /// <summary>Set when the policy changed in this batch: the new policy (validated JSON), or
    /// <see cref="PolicyDocument.AllowAllJson"/> when it was cleared. Null: unchanged.</summary>
    [Id(6)]
    public string? PolicyJson { get; init; }
}
