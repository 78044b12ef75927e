namespace EphemeralOrleans.Grains.Sessions;

/// <summary>
/// A node's open map sessions, in memory: for each stream, the session lease of the gateway serving it and when the
/// node learnt of it; and, after a restart or a silo failure, until when the node counts as online without knowing
/// which of them stand. Its node grain stores only the leases (<see cref="Nodes.NodeState.SessionHosts"/>): whom to ask
/// after a restart (docs/architecture.md, "Sessions").
/// </summary>
public sealed class NodeSessions
{
    private readonly Dictionary<string, (string LeaseId, DateTimeOffset OpenedAt)> _sessions = new(StringComparer.Ordinal);

    public int Count => _sessions.Count;

    /// <summary>Set while the node counts as online without knowing that its sessions stand: by then the leases are
    /// asked again, and what they cannot confirm is over.</summary>
    public DateTimeOffset? UnconfirmedUntil { get; set; }

    public bool Online => _sessions.Count > 0 || UnconfirmedUntil is not null;

    public bool Contains(string streamId) => _sessions.ContainsKey(streamId);

    public void Open(string leaseId, IEnumerable<string> streamIds, DateTimeOffset now)
    {
        foreach (var streamId in streamIds)
        {
            _sessions[streamId] = (leaseId, now);
        }
    }

    public bool Close(string streamId) => _sessions.Remove(streamId);

    /// <summary>Ends the sessions of a lease that lapsed; returns when the last of them opened, or null if it had none.</summary>
    public DateTimeOffset? CloseHeldBy(string leaseId)
    {
        DateTimeOffset? lastOpened = null;
        foreach (var (streamId, session) in _sessions.Where(s => s.Value.LeaseId == leaseId).ToArray())
        {
            _sessions.Remove(streamId);
            lastOpened = lastOpened > session.OpenedAt ? lastOpened : session.OpenedAt;
        }

        return lastOpened;
    }

    /// <summary>The leases to ask which sessions stand: those recorded at the node's last write and those of its sessions.</summary>
    public string[] LeasesToAsk(IEnumerable<string> recorded) =>
        recorded.Concat(_sessions.Values.Select(s => s.LeaseId)).Distinct(StringComparer.Ordinal).ToArray();

    /// <summary>What a lease answered: the sessions it holds stand (back, if the node had lost them), its others are
    /// over. A lease that could not tell (<paramref name="held"/> null) leaves its sessions as they are, unless
    /// <paramref name="final"/>.</summary>
    public void Reconcile(string leaseId, IReadOnlyCollection<string>? held, bool final, DateTimeOffset now)
    {
        if (held is null && !final)
        {
            return;
        }

        foreach (var (streamId, _) in _sessions.Where(s => s.Value.LeaseId == leaseId && held?.Contains(s.Key) != true).ToArray())
        {
            _sessions.Remove(streamId);
        }

        foreach (var streamId in held ?? [])
        {
            _sessions.TryAdd(streamId, (leaseId, now));
        }
    }

    /// <summary>The leases of the open sessions, sorted; with <paramref name="keepRecorded"/>, also the recorded ones
    /// still to be asked (sessions not confirmed yet).</summary>
    public string[] Hosts(IEnumerable<string> recorded, bool keepRecorded) =>
        _sessions.Values.Select(s => s.LeaseId).Concat(keepRecorded ? recorded : [])
            .Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();

    public void Clear()
    {
        _sessions.Clear();
        UnconfirmedUntil = null;
    }
}
