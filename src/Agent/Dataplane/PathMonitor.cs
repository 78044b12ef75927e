namespace EphemeralOrleans.Agent.Dataplane;

/// <summary>
/// Tells from the device's byte counters when a direct path stopped carrying packets: this side keeps sending to the
/// peer and hears nothing back for <c>silence</c>. WireGuard itself would notice only after 15 s (keepalive plus
/// rekey timeout); TCP's acknowledgements, a peer's replies or its keepalives make the counter move on any working
/// path. A lone keepalive of this side (<see cref="KeepaliveBytes"/>) is not reason enough — the peer need not
/// answer it — so only more than that, unanswered, counts. And an online peer sends a keepalive at least every 25 s:
/// nothing at all from it for <c>quiet</c> is a broken path too, even when this side's sends fail before they leave
/// (a local firewall refuses them, so the device never counts them). Fed once per poll with each direct peer's
/// counters.
/// </summary>
public sealed class PathMonitor(TimeSpan silence, TimeSpan quiet)
{
    /// <summary>What a WireGuard keepalive adds to the sender's <c>tx_bytes</c>: a transport header and an empty,
    /// authenticated payload.</summary>
    public const int KeepaliveBytes = 32;

    private readonly Dictionary<string, Counters> _peers = new(StringComparer.Ordinal);

    /// <summary>Whether the path to <paramref name="peerPublicKeyHex"/> looks broken, given its counters now.</summary>
    public bool Broken(string peerPublicKeyHex, long rxBytes, long txBytes, DateTimeOffset now)
    {
        if (!_peers.TryGetValue(peerPublicKeyHex, out var seen) || rxBytes < seen.Rx || txBytes < seen.Tx)
        {
            // First sight, or the peer was made afresh on the device (its counters started over).
            _peers[peerPublicKeyHex] = new Counters(rxBytes, txBytes, now, null, 0);
            return false;
        }

        if (rxBytes > seen.Rx)
        {
            _peers[peerPublicKeyHex] = new Counters(rxBytes, txBytes, now, null, 0);
            return false;
        }

        var unanswered = seen.Unanswered + (txBytes - seen.Tx);
        var since = txBytes > seen.Tx ? seen.Since ?? now : seen.Since;
        _peers[peerPublicKeyHex] = seen with { Tx = txBytes, Since = since, Unanswered = unanswered };
        return (since is { } first && unanswered > KeepaliveBytes && now - first >= silence) || now - seen.Heard >= quiet;
    }

    /// <summary>Starts the peer's count afresh (its path just changed).</summary>
    public void Forget(string peerPublicKeyHex) => _peers.Remove(peerPublicKeyHex);

    // Heard: when the peer was last heard from (or first seen); Since: the first send after that, still unanswered.
    private sealed record Counters(long Rx, long Tx, DateTimeOffset Heard, DateTimeOffset? Since, long Unanswered);
}
