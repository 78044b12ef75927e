namespace EphemeralOrleans.Contracts.Model;

/// <summary>A registration that passed key redemption, handed to the node grain.</summary>
[GenerateSerializer, Immutable, Alias("eo.RegisterCommand")]
public sealed record RegisterCommand(
    [property: Id(0)] string NodeKey,
    [property: Id(1)] string Hostname,
    [property: Id(2)] bool Ephemeral,
    [property: Id(3)] KeyGrant Grant)
{
    /// <summary>When the caller proved it holds the node key's private half: the timestamp of a registration proof the
    /// gateway verified. Null without a proof. A node accepts each proof time once, in increasing order.</summary>
    [Id(4)]
    public DateTimeOffset? ProvenAt { get; init; }

    /// <summary>The node token the caller presented, if any: the other way to show it is the node's own agent.</summary>
    [Id(5)]
    public string? NodeToken { get; init; }

    /// <summary>The id a new node gets (a sealed one, see the gateway's <c>IdSeal</c>); unused when the node exists.
    /// Null: an unsealed id (<see cref="Validation.NodeIds.NewNodeId"/>), which gateways refuse unless it was
    /// issued before ids were sealed.</summary>
    [Id(6)]
    public string? NewNodeId { get; init; }

    /// <summary>The gateway's id of this registration, the same when it retries it after a silo failure: a node that
    /// this very registration made or re-registered (its answer was lost) is handed over again, with a new token.</summary>
    [Id(7)]
    public string? RequestId { get; init; }

    /// <summary>Which attempt of <see cref="RequestId"/> this is (from 1): an earlier attempt that arrives after a later
    /// one (the gateway gave up waiting for it) changes nothing, so the token the gateway answered with stays valid.</summary>
    [Id(8)]
    public int Attempt { get; init; }
}

/// <summary>A registered node and its new token (shown once), or why not.</summary>
[GenerateSerializer, Immutable, Alias("eo.RegisterResult")]
public sealed record RegisterResult(
    [property: Id(0)] NodeEntry? Node,
    [property: Id(1)] string? NodeToken,
    [property: Id(2)] Failure? Failure);

/// <summary>An authenticated session: the node as it is now and the epoch the session belongs to.</summary>
[GenerateSerializer, Immutable, Alias("eo.SessionInfo")]
public sealed record SessionInfo(
    [property: Id(0)] NodeEntry Node,
    [property: Id(1)] int Epoch);

/// <summary>Why a node left the tailnet (new values go last: stored states hold the number).</summary>
public enum RemovalReason
{
    Logout,
    Inactivity,
    Admin,
    /// <summary>Its agent, with <c>--state mem:</c>, logged out as it exited.</summary>
    AgentExit,
    /// <summary>An admin expired its credentials (an ephemeral node goes at once).</summary>
    Expired,
}

public static class RemovalReasons
{
    /// <summary>The reason as the audit log and its readers name it.</summary>
    public static string Name(this RemovalReason reason) => reason switch
    {
        RemovalReason.Logout => "logout",
        RemovalReason.Inactivity => "inactivity",
        RemovalReason.Admin => "deleted-by-admin",
        RemovalReason.AgentExit => "agent-exit",
        RemovalReason.Expired => "expired-by-admin",
        _ => reason.ToString().ToLowerInvariant(),
    };
}

/// <summary>What renaming a node in its tailnet came to.</summary>
public enum RenameOutcome
{
    Renamed,
    NotFound,
    Taken,
}

/// <summary>A rename's outcome and the node as it is after it.</summary>
[GenerateSerializer, Immutable, Alias("RenameResult")]
public sealed record RenameResult(
    [property: Id(0)] RenameOutcome Outcome,
    [property: Id(1)] NodeEntry Node);

/// <summary>The outcome of asking an address lease for an address.</summary>
public enum LeaseOutcome
{
    Acquired,
    Taken,
    Quarantined,
}
