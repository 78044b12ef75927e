using System.Diagnostics;
using System.Text;

namespace EphemeralOrleans.Testing;

/// <summary>
/// A gateway or a standalone silo as a real child process (<c>dotnet EphemeralOrleans.Gateway.dll</c> or
/// <c>EphemeralOrleans.Silo.dll</c>), for crash, restart and cluster tests.
/// </summary>
public sealed class HostProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    /// <summary>The process's own HOME, removed with it.</summary>
    private readonly string _home;

    private HostProcess(Process process, Uri? httpUrl, string home)
    {
        _process = process;
        HttpUrl = httpUrl!;
        _home = home;
    }

    /// <summary>The gateway's HTTP address (gateways only).</summary>
    public Uri HttpUrl { get; }

    /// <summary>The process id (for CPU accounting in benchmarks).</summary>
    public int Pid => _process.Id;

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>Starts a gateway with <paramref name="settings"/> (as <c>--Key=value</c>) and waits for <c>/readyz</c>.</summary>
    public static async Task<HostProcess> StartGatewayAsync(IReadOnlyDictionary<string, string> settings, TimeSpan? readyWithin = null)
    {
        var all = new Dictionary<string, string>(settings);
        // Test and bench processes play whole fleets from one address; a test of the limits sets them itself.
        all.TryAdd("RateLimits:Enabled", "false");
        TestCertificates.EncryptKeyRing(all!);
        // A given address is kept (a network lab's bridge); a wildcard or none becomes loopback.
        var given = all.TryGetValue("Kestrel:Endpoints:Http:Url", out var url) ? new Uri(url) : null;
        var host = given is { Host: not ("0.0.0.0" or "+" or "*" or "[::]") } ? given.Host : "127.0.0.1";
        var http = new Uri($"{given?.Scheme ?? "http"}://{host}:{given?.Port ?? FreePort.Next()}");
        all["Kestrel:Endpoints:Http:Url"] = http.ToString().TrimEnd('/');
        all.TryAdd("Kestrel:Endpoints:Grpc:Url", $"http://{host}:{FreePort.Next()}");
        var gateway = Start(ProjectDll("Gateway"), all, http);
        await gateway.WaitReadyAsync(readyWithin ?? TimeSpan.FromSeconds(60), gateway.GatewayReadyAsync);
        return gateway;
    }

    /// <summary>Starts a standalone silo with <paramref name="settings"/> and waits until its host has started.</summary>
    public static async Task<HostProcess> StartSiloAsync(IReadOnlyDictionary<string, string> settings, TimeSpan? readyWithin = null)
    {
        var silo = Start(ProjectDll("Silo"), settings, null);
        await silo.WaitReadyAsync(readyWithin ?? TimeSpan.FromSeconds(60), () => Task.FromResult(silo.Output.Contains("Application started")));
        return silo;
    }

    private static HostProcess Start(string dll, IReadOnlyDictionary<string, string> settings, Uri? httpUrl)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Path.GetDirectoryName(dll)!,
        };
        // A home of its own, as on a separate machine: processes share only what goes through the cluster.
        var home = Directory.CreateTempSubdirectory("eo-home-").FullName;
        start.Environment["HOME"] = home;
        start.ArgumentList.Add(dll);
        foreach (var (key, value) in settings)
        {
            start.ArgumentList.Add($"--{key}={value}");
        }

        var process = Process.Start(start) ?? throw new InvalidOperationException($"{dll} did not start.");
        var host = new HostProcess(process, httpUrl, home);
        process.OutputDataReceived += (_, e) => host.Append(e.Data);
        process.ErrorDataReceived += (_, e) => host.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return host;
    }

    /// <summary>Runs a host that should refuse to start (a bad setting): its exit code, stdout and stderr; killed if it
    /// still runs after <paramref name="within"/>.</summary>
    public static async Task<(int ExitCode, string Stdout, string Stderr)> RunToExitAsync(string project, IEnumerable<string> settings, TimeSpan within)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true };
        start.ArgumentList.Add(ProjectDll(project));
        foreach (var setting in settings)
        {
            start.ArgumentList.Add(setting);
        }

        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEndAsync();
        try
        {
            await process.WaitForExitAsync().WaitAsync(within);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }

        return (process.ExitCode, await stdout, await stderr);
    }

    /// <summary>kill -9: no shutdown code runs.</summary>
    public async Task KillAsync()
    {
        _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
    }

    /// <summary>SIGTERM and a wait for a graceful exit.</summary>
    public async Task StopAsync(TimeSpan timeout)
    {
        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString()]))
        {
            await kill!.WaitForExitAsync();
        }

        using var cancellation = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cancellation.Token);
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            await KillAsync();
        }

        _process.Dispose();
        try
        {
            Directory.Delete(_home, recursive: true);
        }
        catch (IOException)
        {
            // A child that outlived it still writes there; the next run's dev-check lists it.
        }
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (_output)
            {
                _output.AppendLine(line);
            }
        }
    }

    private async Task WaitReadyAsync(TimeSpan within, Func<Task<bool>> ready)
    {
        var deadline = DateTime.UtcNow + within;
        try
        {
            while (DateTime.UtcNow < deadline)
            {
                if (_process.HasExited)
                {
                    throw new InvalidOperationException($"The process exited with {_process.ExitCode}:\n{Output}");
                }

                if (await ready())
                {
                    return;
                }

                await Task.Delay(200);
            }

            throw new TimeoutException($"The process was not ready within {within}:\n{Output}");
        }
        catch
        {
            await DisposeAsync();
            throw;
        }
    }

    private async Task<bool> GatewayReadyAsync()
    {
        // Readiness only: a test of TLS checks the gateway's certificate itself.
        using var handler = new HttpClientHandler { ServerCertificateCustomValidationCallback = HttpClientHandler.DangerousAcceptAnyServerCertificateValidator };
        using var http = new HttpClient(handler) { BaseAddress = HttpUrl, Timeout = TimeSpan.FromSeconds(5) };
        try
        {
            return (await http.GetAsync("/readyz")).IsSuccessStatusCode;
        }
        catch (Exception exception) when (exception is HttpRequestException or TaskCanceledException)
        {
            return false;
        }
    }

    /// <summary>The directory holding EphemeralOrleans.sln, above the running tests.</summary>
    public static string RepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "EphemeralOrleans.sln")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new InvalidOperationException("EphemeralOrleans.sln not found above " + AppContext.BaseDirectory);
    }

    /// <summary>A host project's build output, found from the repository root (the directory holding EphemeralOrleans.sln).</summary>
    public static string ProjectDll(string project)
    {
        var root = RepositoryRoot();
        var configuration = AppContext.BaseDirectory.Contains("/Release/") ? "Release" : "Debug";
        // The agent's assembly is the eo command.
        return Path.Combine(root, "src", project, "bin", configuration, "net10.0", project == "Agent" ? "eo.dll" : $"EphemeralOrleans.{project}.dll");
    }
}
