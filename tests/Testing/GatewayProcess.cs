using System.Diagnostics;
using System.Text;

namespace EphemeralOrleans.Testing;

/// <summary>The gateway as a real child process (<c>dotnet EphemeralOrleans.Gateway.dll</c>), for crash and restart tests.</summary>
public sealed class GatewayProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private GatewayProcess(Process process, Uri httpUrl)
    {
        _process = process;
        HttpUrl = httpUrl;
    }

    public Uri HttpUrl { get; }

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

    /// <summary>Starts the gateway with <paramref name="settings"/> (as <c>--Key=value</c>) and waits for <c>/readyz</c>.</summary>
    public static async Task<GatewayProcess> StartAsync(IReadOnlyDictionary<string, string> settings, TimeSpan? readyWithin = null)
    {
        var httpPort = settings.TryGetValue("Kestrel:Endpoints:Http:Url", out var url) ? new Uri(url).Port : FreePort.Next();
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Path.GetDirectoryName(GatewayDll)!,
        };
        start.ArgumentList.Add(GatewayDll);
        var all = new Dictionary<string, string>(settings)
        {
            ["Kestrel:Endpoints:Http:Url"] = $"http://127.0.0.1:{httpPort}",
        };
        all.TryAdd("Kestrel:Endpoints:Grpc:Url", $"http://127.0.0.1:{FreePort.Next()}");
        foreach (var (key, value) in all)
        {
            start.ArgumentList.Add($"--{key}={value}");
        }

        var process = Process.Start(start) ?? throw new InvalidOperationException("The gateway did not start.");
        var gateway = new GatewayProcess(process, new Uri($"http://127.0.0.1:{httpPort}"));
        process.OutputDataReceived += (_, e) => gateway.Append(e.Data);
        process.ErrorDataReceived += (_, e) => gateway.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await gateway.WaitReadyAsync(readyWithin ?? TimeSpan.FromSeconds(60));
        }
        catch
        {
            await gateway.DisposeAsync();
            throw;
        }

        return gateway;
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

    private async Task WaitReadyAsync(TimeSpan within)
    {
        using var http = new HttpClient { BaseAddress = HttpUrl, Timeout = TimeSpan.FromSeconds(5) };
        var deadline = DateTime.UtcNow + within;
        while (DateTime.UtcNow < deadline)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"The gateway exited with {_process.ExitCode}:\n{Output}");
            }

            try
            {
                if ((await http.GetAsync("/readyz")).IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
            }
            catch (TaskCanceledException)
            {
            }

            await Task.Delay(200);
        }

        throw new TimeoutException($"The gateway was not ready within {within}:\n{Output}");
    }

    /// <summary>The gateway's build output, found from the repository root (the directory holding EphemeralOrleans.sln).</summary>
    public static string GatewayDll
    {
        get
        {
            var directory = new DirectoryInfo(AppContext.BaseDirectory);
            while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "EphemeralOrleans.sln")))
            {
                directory = directory.Parent;
            }

            var root = directory?.FullName ?? throw new InvalidOperationException("EphemeralOrleans.sln not found above " + AppContext.BaseDirectory);
            var configuration = AppContext.BaseDirectory.Contains("/Release/") ? "Release" : "Debug";
            return Path.Combine(root, "src", "Gateway", "bin", configuration, "net10.0", "EphemeralOrleans.Gateway.dll");
        }
    }
}
