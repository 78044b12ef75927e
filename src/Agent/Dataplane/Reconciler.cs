using System.Collections.Immutable;
using System.Diagnostics;
using System.Net;
using System.Threading.Channels;
using EphemeralOrleans.Agent.Cli;
using EphemeralOrleans.Agent.Control;

namespace EphemeralOrleans.Agent.Dataplane;

/// <summary>
/// Keeps the data plane equal to the latest netmap: <see cref="UpAsync"/> makes the device (after clearing what a
/// killed agent left under the same name), <see cref="Offer"/> hands it netmaps — only the latest waits, so a slow
/// step never queues old maps and the map stream never waits for OS tools — and each is compiled
/// (<see cref="ConfigCompiler"/>) and applied as a difference: the packet filter when its text changed, peers by key
/// through one UAPI transaction, addresses and routes through the <see cref="Router"/>. <see cref="DisposeAsync"/>
/// removes it all.
/// </summary>
public sealed class Reconciler : IAsyncDisposable
{
    private readonly string _device;
    private readonly byte[] _privateKey;
    private readonly int _listenPort;
    private readonly string _wireguardGo;
    private readonly AgentOutput _output;
    private readonly Channel<NetmapSnapshot> _netmaps = Channel.CreateBounded<NetmapSnapshot>(
        new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });
    private readonly TaskCompletionSource<Exception> _failed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stopping = new();
    private readonly Router _router;
    private readonly PacketFilter _filter;
    private WireGuardDevice? _wireGuard;
    private Task _applying = Task.CompletedTask;
    private ImmutableDictionary<string, PeerConfig> _peers = ImmutableDictionary<string, PeerConfig>.Empty;

    public Reconciler(string device, byte[] privateKey, int listenPort, string wireguardGo, AgentOutput output)
    {
        (_device, _privateKey, _listenPort, _wireguardGo, _output) = (device, privateKey, listenPort, wireguardGo, output);
        _router = new Router(device);
        _filter = new PacketFilter();
    }

    /// <summary>Completes when the data plane broke for good (the device died): the agent should stop.</summary>
    public Task<Exception> Failed => _failed.Task;

    /// <summary>When the last netmap was applied, and how long it took from offer to applied (for status and benches).</summary>
    public (DateTimeOffset At, TimeSpan Took, int Peers)? LastApplied { get; private set; }

    /// <summary>Removes what an agent killed with <c>kill -9</c> left under <paramref name="device"/>: a device whose
    /// owner is gone, its link, its UAPI socket. Refuses when a live agent owns the name.</summary>
    public static async Task CleanupAsync(string device, CancellationToken cancellationToken)
    {
        foreach (var (pid, parent) in WireGuardProcesses(device))
        {
            if (parent > 1 && ProcessAlive(parent))
            {
                throw new DataplaneException($"The interface name {device} is in use by another agent (pid {parent}); choose another --tun.");
            }

            try
            {
                using var stale = Process.GetProcessById(pid);
                stale.Kill();
                await stale.WaitForExitAsync(cancellationToken);
            }
            catch (ArgumentException)
            {
                // Gone meanwhile.
            }
        }

        if ((await SystemTools.TryRunAsync("ip", ["link", "show", "dev", device], cancellationToken: cancellationToken)).ExitCode == 0)
        {
            await SystemTools.RunAsync("ip", ["link", "delete", "dev", device], cancellationToken: cancellationToken);
        }

        File.Delete(WireGuardDevice.SocketPath(device));
        await PacketFilter.RemoveAsync(device, cancellationToken);
    }

    /// <summary>Clears leftovers, starts the device with the node's key and listen port, and starts applying netmaps.</summary>
    public async Task UpAsync(CancellationToken cancellationToken)
    {
        await CleanupAsync(_device, cancellationToken);
        _wireGuard = await WireGuardDevice.StartAsync(_device, _wireguardGo, cancellationToken);
        // Nothing comes in until the first map says what may.
        await _filter.SetAsync(FilterCompiler.Compile(_device, [], []), cancellationToken);
        await _wireGuard.SetAsync([$"private_key={Convert.ToHexStringLower(_privateKey)}", $"listen_port={_listenPort}", "replace_peers=true"], cancellationToken);
        _output.Event("interface_up", new { device = _device, listenPort = _listenPort }, $"interface {_device} up, WireGuard on UDP {_listenPort}");
        _applying = Task.Run(() => ApplyLoopAsync(_stopping.Token), CancellationToken.None);
    }

    /// <summary>Hands over the latest netmap; an older one still waiting is dropped.</summary>
    public void Offer(NetmapSnapshot netmap) => _netmaps.Writer.TryWrite(netmap);

    /// <summary>The device's peers as it reports them (endpoint, handshake, bytes).</summary>
    public async Task<IReadOnlyList<PeerStats>> StatsAsync(CancellationToken cancellationToken) =>
        _wireGuard is { HasExited: false } device ? await device.GetAsync(cancellationToken) : [];

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        await _applying;
        if (_wireGuard is not null)
        {
            await _wireGuard.DisposeAsync();
        }

        // The link goes with wireguard-go; what the system kept anyway goes here.
        try
        {
            await CleanupAsync(_device, CancellationToken.None);
        }
        catch (DataplaneException exception)
        {
            _output.Error("dataplane_cleanup", exception.Message);
        }
    }

    private async Task ApplyLoopAsync(CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var netmap in _netmaps.Reader.ReadAllAsync(cancellationToken))
            {
                var clock = Stopwatch.StartNew();
                if (_wireGuard!.HasExited)
                {
                    _failed.TrySetResult(new DataplaneException($"wireguard-go for {_device} exited: {_wireGuard.Log.Trim()}"));
                    return;
                }

                try
                {
                    await ApplyAsync(ConfigCompiler.Compile(_device, netmap, LocalEndpoints.Subnets()), cancellationToken);
                    LastApplied = (DateTimeOffset.UtcNow, clock.Elapsed, _peers.Count);
                }
                catch (Exception exception) when (exception is DataplaneException or IOException or System.Net.Sockets.SocketException)
                {
                    // Reported, and retried with the next netmap (a keepalive-free stream sends one at least on reconnect).
                    _output.Error("dataplane_error", exception.Message);
                    if (_wireGuard.HasExited)
                    {
                        _failed.TrySetResult(exception);
                        return;
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task ApplyAsync(DataplaneConfig config, CancellationToken cancellationToken)
    {
        // The filter first: a peer added below is judged by the rules that came with it.
        await _filter.SetAsync(config.Filter, cancellationToken);
        var lines = new List<string>();
        foreach (var (key, _) in _peers)
        {
            if (!config.Peers.ContainsKey(key))
            {
                lines.Add($"public_key={key}");
                lines.Add("remove=true");
            }
        }

        foreach (var (key, peer) in config.Peers)
        {
            if (_peers.TryGetValue(key, out var applied) && applied.Equals(peer))
            {
                continue;
            }

            lines.Add($"public_key={key}");
            if (peer.Endpoint is { } endpoint && !Equals(endpoint, applied?.Endpoint))
            {
                lines.Add($"endpoint={WireGuardDevice.Format(endpoint)}");
            }

            lines.Add("replace_allowed_ips=true");
            lines.AddRange(peer.AllowedIps.Select(ip => $"allowed_ip={ip}"));
        }

        if (lines.Count > 0)
        {
            await _wireGuard!.SetAsync(lines, cancellationToken);
        }

        // Addresses and routes after the peers: a route never points at a device that cannot deliver yet.
        var first = LastApplied is null;
        await _router.SetAsync(config.Addresses, config.Routes, cancellationToken);
        if (first)
        {
            _output.Event("interface_ready", new { device = _device, addresses = config.Addresses.Select(a => a.ToString()).ToArray() },
                $"interface {_device}: {string.Join(", ", config.Addresses)}");
        }

        var (added, removed) = (config.Peers.Keys.Count(k => !_peers.ContainsKey(k)), _peers.Keys.Count(k => !config.Peers.ContainsKey(k)));
        _peers = config.Peers;
        if (added + removed > 0)
        {
            _output.Event("peers", new { peers = _peers.Count, added, removed }, $"WireGuard peers: {_peers.Count} (+{added} -{removed})");
        }
    }

    /// <summary>wireguard-go processes serving <paramref name="device"/>, and their parents.</summary>
    private static IEnumerable<(int Pid, int Parent)> WireGuardProcesses(string device)
    {
        foreach (var directory in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(directory), out var pid) || pid == Environment.ProcessId)
            {
                continue;
            }

            string[] args;
            int parent;
            try
            {
                args = File.ReadAllText(Path.Combine(directory, "cmdline")).Split('\0', StringSplitOptions.RemoveEmptyEntries);
                var status = File.ReadAllLines(Path.Combine(directory, "status"));
                parent = int.Parse(status.First(l => l.StartsWith("PPid:", StringComparison.Ordinal))[5..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
            }
            catch (Exception exception) when (exception is IOException or UnauthorizedAccessException or InvalidOperationException or FormatException)
            {
                continue;
            }

            var wireguard = Array.FindIndex(args, a => Path.GetFileName(a) == "wireguard-go");
            if (wireguard >= 0 && args.Length > wireguard + 2 && args[wireguard + 1] == "-f" && args[wireguard + 2] == device)
            {
                yield return (pid, parent);
            }
        }
    }

    private static bool ProcessAlive(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}
