namespace EphemeralOrleans.Agent.Dataplane;

/// <summary>
/// Breaks the one stall WireGuard otherwise leaves to its 5 s retry. Two sides that start a first handshake within a
/// round trip of each other (a joiner's first packet and the existing peer's keepalive, both set off by the same
/// registration) each answer the other's initiation, which discards their own, and neither handshake completes until
/// one side retries — and a peer retries at most once per 5 s. So a peer added with keepalives (it is online) is
/// checked after a short wait, and one without a session by then is made afresh on the device, which starts a new
/// initiation at once. One side of a pair goes first — the one with the greater public key, after
/// <c>delay</c>; the other only after twice that — so the fresh initiations do not cross again. Each peer is retried
/// once; after that WireGuard's own timers carry on.
/// </summary>
public sealed class HandshakeWatch(string ownPublicKeyHex, TimeSpan delay)
{
    /// <summary>A session younger than this needs no new handshake (WireGuard rekeys after 120 s).</summary>
    public static readonly TimeSpan SessionAge = TimeSpan.FromSeconds(120);

    private readonly Dictionary<string, DateTimeOffset> _due = new(StringComparer.Ordinal);

    public int Count => _due.Count;

    /// <summary>When the earliest check is due; null when nothing is watched.</summary>
    public DateTimeOffset? NextDue => _due.Count == 0 ? null : _due.Values.Min();

    /// <summary>Whether this side goes first for the peer with <paramref name="peerPublicKeyHex"/> (lower-case hex of
    /// the same length, so ordinal order is the keys' byte order).</summary>
    public bool Leads(string peerPublicKeyHex) => string.CompareOrdinal(ownPublicKeyHex, peerPublicKeyHex) > 0;

    /// <summary>Starts (or restarts) watching a peer just configured with keepalives.</summary>
    public void Watch(string peerPublicKeyHex, DateTimeOffset now) =>
        _due[peerPublicKeyHex] = now + (Leads(peerPublicKeyHex) ? delay : delay * 2);

    /// <summary>Whether a check of the peer is still to come.</summary>
    public bool IsWatched(string peerPublicKeyHex) => _due.ContainsKey(peerPublicKeyHex);

    /// <summary>Stops watching a peer (removed, or no longer online).</summary>
    public void Forget(string peerPublicKeyHex) => _due.Remove(peerPublicKeyHex);

    /// <summary>The peers whose check is due at <paramref name="now"/>; they are no longer watched.</summary>
    public IReadOnlyList<string> TakeDue(DateTimeOffset now)
    {
        var due = _due.Where(d => d.Value <= now).Select(d => d.Key).ToList();
        foreach (var key in due)
        {
            _due.Remove(key);
        }

        return due;
    }

    /// <summary>Whether a peer the device reports as <paramref name="stats"/> (null: not on the device) lacks a live session.</summary>
    public static bool Stalled(PeerStats? stats, DateTimeOffset now) =>
        stats is not null && (stats.LastHandshake is not { } last || now - last > SessionAge);
}
