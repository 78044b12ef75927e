using System.Threading.Channels;
using EphemeralOrleans.Contracts.Model;

namespace EphemeralOrleans.Gateway.Map;

/// <summary>How many of a tailnet's nodes are in each state, from a feed's copy of the registry.</summary>
public sealed record NodeCounts(int Total, int Online, int AwaitingApproval)
{
    public static NodeCounts Of(IEnumerable<NodeEntry> nodes)
    {
        int total = 0, online = 0, awaiting = 0;
        foreach (var node in nodes)
        {
            total++;
            online += node.Presence.Online ? 1 : 0;
            awaiting += node.Record.Authorized ? 0 : 1;
        }

        return new NodeCounts(total, online, awaiting);
    }
}

/// <summary>What a watcher learns: every node (at the start and after a resync), or the nodes a batch changed and
/// removed; with the counts after it.</summary>
public sealed record TailnetWatchUpdate(IReadOnlyList<NodeEntry>? All, IReadOnlyList<NodeEntry> Changed, IReadOnlyList<string> Removed, NodeCounts Counts)
{
    public bool IsReset => All is not null;
}

/// <summary>
/// A console page following a tailnet's nodes (every node, no policy: the console is the admin's): the gateway's feed
/// of that tailnet pushes each batch here as it routes it to agents, so a watching page costs one small update per
/// batch instead of a snapshot per poll. A watcher that falls behind is ended; its page reconnects and starts over.
/// </summary>
internal sealed class TailnetWatch
{
    private const int Capacity = 256;

    private readonly Channel<TailnetWatchUpdate> _updates =
        Channel.CreateBounded<TailnetWatchUpdate>(new BoundedChannelOptions(Capacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });

    public ChannelReader<TailnetWatchUpdate> Updates => _updates.Reader;

    /// <summary>Queues an update; one that does not fit ends the watch (called under the feed's lock: never waits).</summary>
    public void Push(TailnetWatchUpdate update)
    {
        if (!_updates.Writer.TryWrite(update))
        {
            _updates.Writer.TryComplete();
        }
    }

    public void End() => _updates.Writer.TryComplete();
}
