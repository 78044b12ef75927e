namespace EphemeralOrleans.Agent.Dataplane;

/// <summary>The agent's nftables table (see <see cref="FilterCompiler"/>): replaced whole, atomically, only when its
/// text changes; removed on exit and, after a <c>kill -9</c>, by the next agent of the same interface name.</summary>
public sealed class PacketFilter
{
    private string? _applied;

    public async Task SetAsync(string script, CancellationToken cancellationToken)
    {
        if (script == _applied)
        {
            return;
        }

        await SystemTools.RunAsync("nft", ["-f", "-"], script, cancellationToken);
        _applied = script;
    }

    /// <summary>Deletes the table of <paramref name="device"/> if there is one.</summary>
    public static async Task RemoveAsync(string device, CancellationToken cancellationToken)
    {
        var table = FilterCompiler.TableName(device);
        if ((await SystemTools.TryRunAsync("nft", ["list", "table", "inet", table], cancellationToken: cancellationToken)).ExitCode == 0)
        {
            await SystemTools.RunAsync("nft", ["delete", "table", "inet", table], cancellationToken: cancellationToken);
        }
    }
}
