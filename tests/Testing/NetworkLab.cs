using System.Diagnostics;
using System.Net;

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
        var id = Convert.ToHexStringLower(Guid.NewGuid().ToByteArray().AsSpan(0, 2));
        var subnet = Enumerable.Range(0, 64).Select(_ => Random.Shared.Next(1, 255))
            .First(n => string.IsNullOrWhiteSpace(Run("ip", ["-o", "addr", "show", "to", $"198.18.{n}.0/24"]).Output));
        Directory.CreateDirectory(MarkerDirectory);
        await File.WriteAllTextAsync(Path.Combine(MarkerDirectory, id), Environment.ProcessId.ToString());
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
        if (!Directory.Exists(MarkerDirectory))
        {
            return;
        }

        foreach (var marker in Directory.GetFiles(MarkerDirectory))
        {
            if (int.TryParse(await File.ReadAllTextAsync(marker), out var pid) && ProcessAlive(pid))
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
            foreach (var pid in Run("ip", ["netns", "pids", name]).Output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                Run("kill", ["-KILL", pid.Trim()]);
            }

            Run("ip", ["netns", "delete", name]);
        }

        Run("ip", ["link", "delete", $"eot{id}br"]);
        File.Delete(Path.Combine(MarkerDirectory, id));
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
