using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace EphemeralOrleans.Testing;

/// <summary>
/// A small network of Linux network namespaces for tests with real packets: a bridge in this (the host's) namespace
/// at <c>198.18.N.1/24</c>, where an in-process gateway can listen, and namespaces each joined to it by a veth pair at
/// <c>198.18.N.k/24</c>. Nothing else: no default route anywhere in them, so a wrong address fails with "network
/// unreachable" and never leaves the machine. Everything is removed on dispose, and a lab left by a test process
/// that died is removed when the next lab is made.
/// </summary>
public sealed class NetworkLab : IAsyncDisposable
{
    private const string MarkerDirectory = "/tmp/eo-network-labs";
    private readonly string _id;
    private readonly List<string> _namespaces = [];
    private int _nextHost = 2;

    private NetworkLab(string id, int subnet)
    {
        _id = id;
        Subnet = subnet;
        HostAddress = IPAddress.Parse($"198.18.{subnet}.1");
    }

    /// <summary>N of 198.18.N.0/24.</summary>
    public int Subnet { get; }

    /// <summary>The bridge's address, in this process's namespace: where a gateway for the lab listens.</summary>
    public IPAddress HostAddress { get; }

    private string Bridge => $"eot{_id}br";

    /// <summary>Why labs cannot be made here (not root, no <c>ip</c>, no namespaces), or null.</summary>
    public static string? UnavailableReason()
    {
        if (!OperatingSystem.IsLinux() || Environment.UserName != "root")
        {
            return "network namespace tests need root on Linux";
        }

        return Run("ip", ["netns", "list"]).ExitCode == 0 ? null : "the ip tool (iproute2) is missing or cannot list namespaces";
    }

    public static async Task<NetworkLab> CreateAsync()
    {
        await RemoveLeftoversAsync();
        RaiseNeighbourTableLimits();
        var id = Convert.ToHexStringLower(Guid.NewGuid().ToByteArray().AsSpan(0, 2));
        var subnet = Enumerable.Range(0, 64).Select(_ => Random.Shared.Next(1, 255))
            .First(n => string.IsNullOrWhiteSpace(Run("ip", ["-o", "addr", "show", "to", $"198.18.{n}.0/24"]).Output));
        Directory.CreateDirectory(MarkerDirectory);
        await File.WriteAllTextAsync(Path.Combine(MarkerDirectory, id), ProcessIdentity(Environment.ProcessId));
        var lab = new NetworkLab(id, subnet);
        try
        {
            Must("ip", "link", "add", lab.Bridge, "type", "bridge");
            Must("ip", "addr", "add", $"{lab.HostAddress}/24", "dev", lab.Bridge);
            Must("ip", "link", "set", lab.Bridge, "up");
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }

        return lab;
    }

    /// <summary>The kernel keeps one ARP and one NDP cache for all namespaces, 1,024 entries at most by default
    /// (<c>gc_thresh3</c>). Forty namespaces whose agents all talk to each other overflow it, and the kernel then drops
    /// packets to new neighbours without telling the sender ("neighbor table overflow" in the kernel log; a UDP sender
    /// sees no error): joiners of a 20-agent bench waited 5–10 s for WireGuard to retry. Raised, never lowered.</summary>
    private static void RaiseNeighbourTableLimits()
    {
        foreach (var family in new[] { "ipv4", "ipv6" })
        {
            // Largest first: the kernel wants thresh1 ≤ thresh2 ≤ thresh3 to make sense.
            foreach (var (name, wanted) in new[] { ("gc_thresh3", 65536), ("gc_thresh2", 32768), ("gc_thresh1", 8192) })
            {
                var path = $"/proc/sys/net/{family}/neigh/default/{name}";
                if (File.Exists(path) && int.TryParse(File.ReadAllText(path).Trim(), out var current) && current < wanted)
                {
                    File.WriteAllText(path, wanted.ToString(System.Globalization.CultureInfo.InvariantCulture));
                }
            }
        }
    }

    /// <summary>A new namespace on the bridge; returns its name and address.</summary>
    public (string Namespace, IPAddress Address) AddHost()
    {
        var k = _nextHost++;
        var name = $"eo-t-{_id}-{k}";
        var outside = $"eot{_id}h{k}";
        var address = IPAddress.Parse($"198.18.{Subnet}.{k}");
        Must("ip", "netns", "add", name);
        _namespaces.Add(name);
        Must("ip", "link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", name);
        Must("ip", "link", "set", outside, "master", Bridge, "up");
        Must("ip", "-n", name, "addr", "add", $"{address}/24", "dev", "eth0");
        Must("ip", "-n", name, "link", "set", "eth0", "up");
        Must("ip", "-n", name, "link", "set", "lo", "up");
        return (name, address);
    }

    /// <summary>A TCP socket that lives in <paramref name="namespaceName"/>: made on a thread of its own that enters the
    /// namespace (<c>setns</c>) for that moment only; the socket stays there, whichever thread uses it later.</summary>
    public static Socket TcpSocketIn(string namespaceName, AddressFamily family)
    {
        Socket? socket = null;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var target = File.OpenHandle($"/var/run/netns/{namespaceName}");
                using var own = File.OpenHandle($"/proc/self/task/{Gettid()}/ns/net");
                if (Setns((int)target.DangerousGetHandle(), CloneNewNet) != 0)
                {
                    throw new InvalidOperationException($"setns into {namespaceName} failed: errno {Marshal.GetLastPInvokeError()}");
                }

                try
                {
                    socket = new Socket(family, SocketType.Stream, ProtocolType.Tcp);
                }
                finally
                {
                    // The thread ends right after; going back keeps the runtime from ever reusing it inside the namespace.
                    Setns((int)own.DangerousGetHandle(), CloneNewNet);
                }
            }
            catch (Exception exception)
            {
                failure = exception;
            }
        });
        thread.Start();
        thread.Join();
        return socket ?? throw new InvalidOperationException($"No socket in {namespaceName}", failure);
    }

    /// <summary>The public keys (hex) of the peers a WireGuard device has, read from its UAPI socket; empty when no
    /// device of that name runs.</summary>
    public static async Task<string[]> WireGuardPeersAsync(string device)
    {
        var path = $"/var/run/wireguard/{device}.sock";
        if (!File.Exists(path))
        {
            return [];
        }

        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException)
        {
            return [];
        }

        await using var stream = new NetworkStream(socket);
        await stream.WriteAsync("get=1\n\n"u8.ToArray());
        using var reader = new StreamReader(stream);
        var keys = new List<string>();
        while (await reader.ReadLineAsync() is { Length: > 0 } line)
        {
            if (line.StartsWith("public_key=", StringComparison.Ordinal))
            {
                keys.Add(line["public_key=".Length..]);
            }
        }

        return [.. keys];
    }

    private const int CloneNewNet = 0x40000000;

    [DllImport("libc", EntryPoint = "setns", SetLastError = true)]
    private static extern int Setns(int fd, int nstype);

    [DllImport("libc", EntryPoint = "gettid")]
    private static extern int Gettid();

    /// <summary>Runs a command inside <paramref name="namespaceName"/>; its exit code and output.</summary>
    public static (int ExitCode, string Output) RunIn(string namespaceName, params string[] command) =>
        Run("ip", ["netns", "exec", namespaceName, .. command]);

    public ValueTask DisposeAsync()
    {
        Remove(_id, _namespaces);
        return ValueTask.CompletedTask;
    }

    private static async Task RemoveLeftoversAsync()
    {
        // UAPI sockets of devices that died with a killed agent (nothing listens): the directory is shared by every
        // namespace, and a live device always accepts.
        foreach (var socketPath in Directory.Exists("/var/run/wireguard") ? Directory.GetFiles("/var/run/wireguard", "*.sock") : [])
        {
            using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await probe.ConnectAsync(new UnixDomainSocketEndPoint(socketPath));
            }
            catch (SocketException exception) when (exception.SocketErrorCode == SocketError.ConnectionRefused)
            {
                File.Delete(socketPath);
            }
        }

        if (!Directory.Exists(MarkerDirectory))
        {
            return;
        }

        foreach (var marker in Directory.GetFiles(MarkerDirectory))
        {
            // A process id alone can be reused by now: its start time says whether it is still the lab's maker.
            var owner = await File.ReadAllTextAsync(marker);
            if (int.TryParse(owner.Split(' ')[0], out var pid) && ProcessIdentity(pid) == owner)
            {
                continue;
            }

            var id = Path.GetFileName(marker);
            var namespaces = Run("ip", ["netns", "list"]).Output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(line => line.Split(' ')[0]).Where(name => name.StartsWith($"eo-t-{id}-", StringComparison.Ordinal)).ToList();
            Remove(id, namespaces);
        }
    }

    /// <summary>Ends what runs in the namespaces, deletes them (their veths go with them) and the bridge.</summary>
    private static void Remove(string id, IEnumerable<string> namespaces)
    {
        foreach (var name in namespaces)
        {
            foreach (var pid in Run("ip", ["netns", "pids", name]).Output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(p => p.Trim()))
            {
                // A wireguard-go killed here leaves its UAPI socket (one directory for all namespaces): remove it too.
                var args = File.Exists($"/proc/{pid}/cmdline") ? File.ReadAllText($"/proc/{pid}/cmdline").Split('\0') : [];
                Run("kill", ["-KILL", pid]);
                var device = Array.IndexOf(args, "-f") is var f and >= 0 && f + 1 < args.Length && args.Any(a => a.EndsWith("wireguard-go", StringComparison.Ordinal))
                    ? args[f + 1]
                    : null;
                if (device is not null)
                {
                    File.Delete($"/var/run/wireguard/{device}.sock");
                }
            }

            Run("ip", ["netns", "delete", name]);
        }

        Run("ip", ["link", "delete", $"eot{id}br"]);
        File.Delete(Path.Combine(MarkerDirectory, id));
    }

    /// <summary>A process's id and start time (clock ticks since boot), or "" when it does not exist.</summary>
    private static string ProcessIdentity(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return $"{pid} {stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[19]}";
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            return "";
        }
    }

    private static void Must(params string[] command)
    {
        var (exitCode, output) = Run(command[0], command[1..]);
        if (exitCode != 0)
        {
            throw new InvalidOperationException($"{string.Join(' ', command)} failed ({exitCode}): {output}");
        }
    }

    private static (int ExitCode, string Output) Run(string file, string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        try
        {
            using var process = Process.Start(start)!;
            var output = process.StandardOutput.ReadToEndAsync();
            var error = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(TimeSpan.FromSeconds(20)))
            {
                process.Kill(entireProcessTree: true);
                return (-1, $"{file} timed out");
            }

            return (process.ExitCode, output.Result + error.Result);
        }
        catch (System.ComponentModel.Win32Exception exception)
        {
            return (-1, exception.Message);
        }
    }
}
