namespace EphemeralOrleans.Grains.Nodes;

/// <summary>
/// When a node grain must next check itself, from what the node is now. Sessions to confirm: once, when the leases must
/// have been restored. Online otherwise: never (its gateways' leases tell it when its sessions end). Offline and
/// ephemeral: once, at its removal deadline (the activation is kept until then). Offline otherwise: never. So neither a
/// connected fleet nor offline nodes waiting for their deadlines cost timer ticks (with a check every 15 s, 50,000
/// nodes cost 3,300 grain turns a second).
/// </summary>
public static class NodeChecks
{
    /// <summary>The moment of the next check; null for none.</summary>
    public static DateTimeOffset? Next(bool exists, DateTimeOffset? unconfirmedUntil, bool online, bool ephemeral, DateTimeOffset deadline) =>
        !exists ? null
        : unconfirmedUntil is { } until ? until
        : online || !ephemeral ? null
        : deadline;
}
