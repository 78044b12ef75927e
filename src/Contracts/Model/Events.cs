using System.Text.Json;

namespace EphemeralOrleans.Contracts.Model;

/// <summary>
/// One entry of a tailnet's audit log: what changed, when, who did it and to what. <see cref="Data"/> is a small JSON
/// object with no secrets (never a key secret, node token or ID token: only ids, names, addresses and reasons).
/// </summary>
[GenerateSerializer, Immutable, Alias("AuditEvent")]
public sealed record AuditEvent(
    [property: Id(0)] long Id,
    [property: Id(1)] DateTimeOffset Time,
    [property: Id(2)] string Type,
    [property: Id(3)] string Actor,
    [property: Id(4)] string Target,
    [property: Id(5)] string? NodeId,
    [property: Id(6)] string Data);

/// <summary>An event before the log numbers it. <see cref="Once"/>, when set, makes appending it idempotent: a second
/// event with the same value in the same tailnet is dropped (a removal resumed after a crash records itself once).</summary>
[GenerateSerializer, Immutable, Alias("EventDraft")]
public sealed record EventDraft(
    [property: Id(0)] string Type,
    [property: Id(1)] string Actor,
    [property: Id(2)] string Target,
    [property: Id(3)] string? NodeId,
    [property: Id(4)] string Data,
    [property: Id(5)] string? Once = null)
{
    public static EventDraft Create(string type, string actor, string target, string? nodeId, object data, string? once = null) =>
        new(type, actor, target, nodeId, JsonSerializer.Serialize(data, JsonOptions), once);

    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull,
    };
}

/// <summary>Which events to read: after <see cref="After"/> (0: from the oldest kept), at most <see cref="Limit"/>,
/// optionally of one type (or a type prefix ending in '.', e.g. <c>node.</c>) and about one node; oldest first, or
/// with <see cref="Newest"/> the newest ones, newest first (the console's view).</summary>
[GenerateSerializer, Immutable, Alias("EventQuery")]
public sealed record EventQuery(
    [property: Id(0)] long After,
    [property: Id(1)] int Limit,
    [property: Id(2)] string? Type = null,
    [property: Id(3)] string? NodeId = null,
    [property: Id(4)] bool Newest = false);

/// <summary>The event types; the API, the CLI and webhooks filter by these names.</summary>
public static class EventTypes
{
    public const string KeyCreated = "key.created";
    public const string KeyRevoked = "key.revoked";
    public const string KeyUsedUp = "key.used_up";
    public const string KeyExpired = "key.expired";
    public const string NodeRegistered = "node.registered";
    public const string NodeReauthenticated = "node.reauthenticated";
    public const string NodeApproved = "node.approved";
    public const string NodeRenamed = "node.renamed";
    public const string NodeLoggedOut = "node.logged_out";
    public const string NodeExpired = "node.expired";
    public const string NodeRemoved = "node.removed";
    public const string AddressReleased = "address.released";
    public const string PolicyUpdated = "policy.updated";
    public const string SettingsUpdated = "settings.updated";
    public const string TrustPolicyPut = "trust_policy.put";
    public const string TrustPolicyDeleted = "trust_policy.deleted";

    // The admin log's (see EventLogs.Admin): who used the admin key, from where.
    public const string AdminSignedIn = "admin.signed_in";
    public const string AdminSignInFailed = "admin.sign_in_failed";
    public const string AdminThrottled = "admin.throttled";
    public const string AdminNewAddress = "admin.new_address";

    public static readonly IReadOnlySet<string> All = new HashSet<string>(StringComparer.Ordinal)
    {
        KeyCreated, KeyRevoked, KeyUsedUp, KeyExpired, NodeRegistered, NodeReauthenticated, NodeApproved, NodeRenamed, NodeLoggedOut,
        NodeExpired, NodeRemoved, AddressReleased, PolicyUpdated, SettingsUpdated, TrustPolicyPut, TrustPolicyDeleted,
        AdminSignedIn, AdminSignInFailed, AdminThrottled, AdminNewAddress,
    };

    /// <summary>A filter is a type, or a family of them ("node." or "node.*").</summary>
    public static bool IsFilter(string filter) =>
        All.Contains(filter) || (Family(filter) is { } family && All.Any(t => t.StartsWith(family, StringComparison.Ordinal)));

    public static bool Matches(string filter, string type) =>
        Family(filter) is { } family ? type.StartsWith(family, StringComparison.Ordinal) : type == filter;

    /// <summary>"node." for "node." or "node.*"; null for a single type.</summary>
    public static string? Family(string filter) =>
        filter.EndsWith(".*", StringComparison.Ordinal) ? filter[..^1] : filter.EndsWith('.') ? filter : null;
}

/// <summary>The logs beside the tailnets' own.</summary>
public static class EventLogs
{
    /// <summary>The admin log's key: uses of the admin key, which belongs to no tailnet. Not a tailnet name (those
    /// start with a letter or digit), so no tailnet's log can be it.</summary>
    public const string Admin = "-admin";
}

/// <summary>Who did something, as the audit log names them. The gateway puts the caller into the Orleans request
/// context (<see cref="ContextKey"/>) before calling grains; a call without one (a reminder, a timer) is the system's.</summary>
public static class EventActors
{
    public const string ContextKey = "eo.actor";
    public const string System = "system";
    public const string AdminApi = "admin-api";
    public const string Console = "console";

    public static string Node(string nodeId) => $"node:{nodeId}";

    public static string Key(string keyId) => $"key:{keyId}";

    /// <summary>What a registration showed: an auth key, or a trust policy (a grant's key id <c>trust:&lt;id&gt;</c>).</summary>
    public static string Credential(string grantKeyId) =>
        grantKeyId.StartsWith(KeyGrant.TrustPolicyPrefix, StringComparison.Ordinal)
            ? $"trust-policy:{grantKeyId[KeyGrant.TrustPolicyPrefix.Length..]}"
            : Key(grantKeyId);

    /// <summary>The actor of the current grain call.</summary>
    public static string Current => Orleans.Runtime.RequestContext.Get(ContextKey) as string ?? System;
}

/// <summary>An event as the API shows it: <c>data</c> as a JSON object, not a string.</summary>
public sealed record EventView(
    long Id,
    DateTimeOffset Time,
    string Type,
    string Actor,
    string Target,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    string? Node,
    JsonElement Data)
{
    public static EventView From(AuditEvent e)
    {
        using var data = JsonDocument.Parse(e.Data);
        return new EventView(e.Id, e.Time, e.Type, e.Actor, e.Target, e.NodeId, data.RootElement.Clone());
    }
}
