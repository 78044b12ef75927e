using EphemeralOrleans.Contracts.Model;

namespace EphemeralOrleans.Grains.Nodes;

/// <summary>What a node grain persists. Written on registration, connect/disconnect transitions and admin changes, never per keepalive.</summary>
[GenerateSerializer, Alias("eo.NodeState")]
public sealed class NodeState
{
    [Id(0)] public string? NodeId { get; set; }
    [Id(1)] public string Tailnet { get; set; } = "";
    [Id(2)] public string NodeKey { get; set; } = "";
    [Id(3)] public string Hostname { get; set; } = "";
    [Id(4)] public string Name { get; set; } = "";
    [Id(5)] public uint Ipv4 { get; set; }
    [Id(6)] public bool Ephemeral { get; set; }
    [Id(7)] public string[] Tags { get; set; } = [];
    [Id(8)] public bool Authorized { get; set; }
    [Id(9)] public bool LoggedOut { get; set; }
    [Id(10)] public DateTimeOffset Created { get; set; }
    [Id(11)] public string KeyId { get; set; } = "";
    [Id(12)] public byte[]? TokenHash { get; set; }
    [Id(13)] public int SessionEpoch { get; set; }

    /// <summary>Whether a map stream was open at the last write: after a crash such a node's clock restarts at recovery.</summary>
    [Id(14)] public bool Connected { get; set; }

    /// <summary>The last connect or disconnect (registration for a node that never connected).</summary>
    [Id(15)] public DateTimeOffset LastSeen { get; set; }

    /// <summary>Set (durably) before a removal's steps start, so that a crash mid-way is finished by the reminder.</summary>
    [Id(16)] public RemovalReason? Removing { get; set; }

    /// <summary>The time of the last registration proof this node accepted; a proof must be later (no replay).</summary>
    [Id(17)] public DateTimeOffset? LastProofAt { get; set; }

    /// <summary>The UDP endpoints the node's WireGuard listens on, as its agent last reported them.</summary>
    [Id(18)] public System.Net.IPEndPoint[] Endpoints { get; set; } = [];

    /// <summary>The subject of the OIDC token that registered the node (null for an auth key).</summary>
    [Id(19)] public string? Subject { get; set; }

    /// <summary>Who started the removal (the audit log's actor), set with <see cref="Removing"/>.</summary>
    [Id(20)] public string? RemovedBy { get; set; }

    /// <summary>When the removal started, set with <see cref="Removing"/>.</summary>
    [Id(21)] public DateTimeOffset? RemovedAt { get; set; }

    /// <summary>The gateway session leases that held the node's open sessions at the last write: after a restart the
    /// grain asks them which sessions still stand.</summary>
    [Id(22)] public string[] SessionHosts { get; set; } = [];

    /// <summary>The gateway's request id of the registration that last made or re-registered the node (see
    /// <see cref="RegisterCommand.RequestId"/>).</summary>
    [Id(23)] public string? LastRegistrationId { get; set; }

    /// <summary>The attempt of <see cref="LastRegistrationId"/> that made or re-registered the node.</summary>
    [Id(24)] public int LastRegistrationAttempt { get; set; }
}
