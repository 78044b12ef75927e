using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace EphemeralOrleans.Agent.Dataplane;

/// <summary>A peer as the device reports it: where it was last heard from, its last handshake, bytes each way.</summary>
public sealed record PeerStats(string PublicKeyHex, string? Endpoint, DateTimeOffset? LastHandshake, long RxBytes, long TxBytes);

/// <summary>
/// A WireGuard device run by <c>wireguard-go -f NAME</c> as a supervised child (it dies with the agent: the kernel
/// sends it SIGKILL through <c>setpriv --pdeathsig</c>, so even a <c>kill -9</c> of the agent leaves no device), and
/// configured through its UAPI socket, <c>/var/run/wireguard/NAME.sock</c>, with the documented text protocol.
/// The parent-death signal fires when the <em>thread</em> that started the child ends, not the process: started from
/// a thread-pool thread, the device died whenever the pool retired that thread after idling (agents lost their
/// tunnel at random after a minute or so). So a thread of its own starts wireguard-go and lives as long as the device.
/// </summary>
public sealed class WireGuardDevice : IAsyncDisposable
{
    public const string SocketDirectory = "/var/run/wireguard";
    private static readonly TimeSpan StartDeadline = TimeSpan.FromSeconds(10);

    /// <summary>The last lines wireguard-go wrote, for the error that reports its exit.</summary>
    private const int LogLines = 40;

    private readonly Process _process;
    private readonly ManualResetEventSlim _ownerRelease;
    private readonly Queue<string> _log = new();

    private WireGuardDevice(string name, Process process, ManualResetEventSlim ownerRelease)
    {
        Name = name;
        _process = process;
        _ownerRelease = ownerRelease;
    }

    public string Name { get; }

    public static string SocketPath(string name) => Path.Combine(SocketDirectory, name + ".sock");

    /// <summary>Starts the device and waits until its UAPI socket answers.</summary>
    public static async Task<WireGuardDevice> StartAsync(string name, string wireguardGo, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo(SystemTools.Find("setpriv") ?? throw new DataplaneException("setpriv (util-linux) is missing."))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var arg in new[] { "--pdeathsig", "KILL", wireguardGo, "-f", name })
        {
            start.ArgumentList.Add(arg);
        }

        // Where the kernel has its own WireGuard, wireguard-go exits unless told that userspace is wanted.
        start.Environment["WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD"] = "1";
        var (process, ownerRelease) = await StartOnOwnThreadAsync(start, name);
        var device = new WireGuardDevice(name, process, ownerRelease);
        process.OutputDataReceived += (_, e) => device.Keep(e.Data);
        process.ErrorDataReceived += (_, e) => device.Keep(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        var clock = Stopwatch.StartNew();
        while (true)
        {
            if (process.HasExited)
            {
                throw new DataplaneException($"wireguard-go exited ({process.ExitCode}) while starting {name}: {device.Log.Trim()}");
            }

            try
            {
                await device.GetAsync(cancellationToken);
                return device;
            }
            catch (Exception exception) when (exception is SocketException or IOException && clock.Elapsed < StartDeadline)
            {
                await Task.Delay(20, cancellationToken);
            }
            catch (Exception exception) when (exception is SocketException or IOException)
            {
                await device.DisposeAsync();
                throw new DataplaneException($"wireguard-go did not open {SocketPath(name)} within {StartDeadline.TotalSeconds:0} s: {device.Log.Trim()}");
            }
        }
    }

    public bool HasExited => _process.HasExited;

    /// <summary>How it ended, for errors: its exit code, or the signal that killed it.</summary>
    public string Exit => !_process.HasExited ? "running" : _process.ExitCode > 128 ? $"killed by signal {_process.ExitCode - 128}" : $"exit code {_process.ExitCode}";

    /// <summary>What wireguard-go last wrote (its banner about kernel WireGuard left out).</summary>
    public string Log
    {
        get
        {
            lock (_log)
            {
                return string.Join('\n', _log);
            }
        }
    }

    /// <summary>Starts the process from a dedicated thread that stays until <see cref="DisposeAsync"/> (see the class).</summary>
    private static async Task<(Process, ManualResetEventSlim)> StartOnOwnThreadAsync(ProcessStartInfo start, string name)
    {
        var started = new TaskCompletionSource<Process>(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new ManualResetEventSlim();
        var owner = new Thread(() =>
        {
            try
            {
                started.SetResult(Process.Start(start) ?? throw new DataplaneException("wireguard-go did not start."));
            }
            catch (Exception exception)
            {
                started.SetException(exception);
                return;
            }

            release.Wait();
        })
        {
            IsBackground = true,
            Name = $"wireguard-go {name}",
        };
        owner.Start();
        return (await started.Task, release);
    }

    /// <summary>One <c>set</c> transaction (lines of <c>key=value</c>); throws when the device refuses it.</summary>
    public async Task SetAsync(IEnumerable<string> lines, CancellationToken cancellationToken)
    {
        var request = new StringBuilder("set=1\n");
        foreach (var line in lines)
        {
            request.Append(line).Append('\n');
        }

        var answer = await ExchangeAsync(request.Append('\n').ToString(), cancellationToken);
        var errno = answer.FirstOrDefault(l => l.StartsWith("errno=", StringComparison.Ordinal));
        if (errno != "errno=0")
        {
            throw new DataplaneException($"wireguard-go refused a configuration change ({errno ?? "no answer"}).");
        }
    }

    /// <summary>The device's peers as it reports them.</summary>
    public async Task<IReadOnlyList<PeerStats>> GetAsync(CancellationToken cancellationToken)
    {
        var peers = new List<PeerStats>();
        PeerStats? current = null;
        foreach (var line in await ExchangeAsync("get=1\n\n", cancellationToken))
        {
            var equals = line.IndexOf('=');
            if (equals < 0)
            {
                continue;
            }

            var (key, value) = (line[..equals], line[(equals + 1)..]);
            switch (key)
            {
                case "public_key":
                    if (current is not null)
                    {
                        peers.Add(current);
                    }

                    current = new PeerStats(value, null, null, 0, 0);
                    break;
                case "endpoint" when current is not null:
                    current = current with { Endpoint = value };
                    break;
                case "last_handshake_time_sec" when current is not null && long.TryParse(value, CultureInfo.InvariantCulture, out var seconds) && seconds > 0:
                    current = current with { LastHandshake = DateTimeOffset.FromUnixTimeSeconds(seconds) };
                    break;
                case "rx_bytes" when current is not null:
                    current = current with { RxBytes = long.Parse(value, CultureInfo.InvariantCulture) };
                    break;
                case "tx_bytes" when current is not null:
                    current = current with { TxBytes = long.Parse(value, CultureInfo.InvariantCulture) };
                    break;
            }
        }

        if (current is not null)
        {
            peers.Add(current);
        }

        return peers;
    }

    /// <summary>Stops wireguard-go; its TUN device goes with it.</summary>
    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
        _ownerRelease.Set();
        File.Delete(SocketPath(Name));
    }

    private async Task<List<string>> ExchangeAsync(string request, CancellationToken cancellationToken)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(SocketPath(Name)), cancellationToken);
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request), cancellationToken);
        using var reader = new StreamReader(stream, Encoding.ASCII);
        var lines = new List<string>();
        while (await reader.ReadLineAsync(cancellationToken) is { } line && line.Length > 0)
        {
            lines.Add(line);
        }

        return lines;
    }

    private void Keep(string? line)
    {
        if (line is null)
        {
            return;
        }

        if (line.Length == 0 || "┌│└".Contains(line[0]))
        {
            return;
        }

        lock (_log)
        {
            _log.Enqueue(line);
            if (_log.Count > LogLines)
            {
                _log.Dequeue();
            }
        }
    }
}
