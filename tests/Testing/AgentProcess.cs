using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace EphemeralOrleans.Testing;

/// <summary>
/// The agent as a real child process (<c>dotnet eo.dll …</c>), as a CI job would run it: its
/// <c>--json</c> events are collected line by line; it can be sent SIGTERM or killed with SIGKILL.
/// </summary>
public sealed class AgentProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly List<JsonElement> _events = [];
    private readonly StringBuilder _output = new();
    private readonly SemaphoreSlim _arrived = new(0);

    private AgentProcess(Process process)
    {
        _process = process;
    }

    public int ExitCode => _process.ExitCode;

    public bool HasExited => _process.HasExited;

    /// <summary>Everything it printed, stdout and stderr, for failure messages.</summary>
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

    /// <summary>Starts <c>agent args…</c>; environment variables in <paramref name="environment"/> are added; with
    /// <paramref name="inNamespace"/>, inside that network namespace (<c>ip netns exec</c> execs: the process is the agent).</summary>
    public static AgentProcess Start(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null, string? inNamespace = null)
    {
        var dll = HostProcess.ProjectDll("Agent");
        var start = new ProcessStartInfo(inNamespace is null ? "dotnet" : "ip")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Path.GetDirectoryName(dll)!,
        };
        if (inNamespace is not null)
        {
            foreach (var arg in new[] { "netns", "exec", inNamespace, "dotnet" })
            {
                start.ArgumentList.Add(arg);
            }
        }

        start.ArgumentList.Add(dll);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }

        var process = Process.Start(start) ?? throw new InvalidOperationException("The agent did not start.");
        var agent = new AgentProcess(process);
        process.OutputDataReceived += (_, e) => agent.OnLine(e.Data, stdout: true);
        process.ErrorDataReceived += (_, e) => agent.OnLine(e.Data, stdout: false);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return agent;
    }

    /// <summary>Runs a short command (status, keys …) to its end and returns its exit code and output.</summary>
    public static async Task<(int ExitCode, string Output)> RunAsync(IEnumerable<string> args, TimeSpan within,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        await using var agent = Start(args, environment);
        var exitCode = await agent.WaitForExitAsync(within);
        return (exitCode, agent.Output);
    }

    /// <summary>How many events named <paramref name="name"/> have arrived so far.</summary>
    public int EventCount(string name)
    {
        lock (_events)
        {
            return _events.Count(e => e.TryGetProperty("event", out var n) && n.GetString() == name);
        }
    }

    /// <summary>The process id: the agent itself (also under <c>ip netns exec</c>, which execs).</summary>
    public int Pid => _process.Id;

    /// <summary>The first <c>--json</c> event named <paramref name="name"/> from the <paramref name="skip"/>th on;
    /// fails if the agent exits first or none comes in time.</summary>
    public Task<JsonElement> WaitForEventAsync(string name, TimeSpan within, int skip = 0) => WaitForEventAsync(name, _ => true, within, skip);

    /// <summary>The first event named <paramref name="name"/> (from the <paramref name="skip"/>th on) that <paramref name="match"/>es.</summary>
    public async Task<JsonElement> WaitForEventAsync(string name, Func<JsonElement, bool> match, TimeSpan within, int skip = 0)
    {
        var deadline = DateTime.UtcNow + within;
        while (true)
        {
            lock (_events)
            {
                var matches = _events.Where(e => e.TryGetProperty("event", out var n) && n.GetString() == name).Skip(skip).Where(match).ToArray();
                if (matches.Length > 0)
                {
                    return matches[0];
                }
            }

            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || (_process.HasExited && !await _arrived.WaitAsync(100)))
            {
                throw new TimeoutException($"No '{name}' event from the agent within {within} (exited: {_process.HasExited}):\n{Output}");
            }

            await _arrived.WaitAsync(left < TimeSpan.FromMilliseconds(20) ? left : TimeSpan.FromMilliseconds(20));
        }
    }

    public async Task<int> WaitForExitAsync(TimeSpan within)
    {
        using var timeout = new CancellationTokenSource(within);
        try
        {
            await _process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"The agent did not exit within {within}:\n{Output}");
        }

        return _process.ExitCode;
    }

    /// <summary>SIGTERM, as a container runtime stopping the job sends.</summary>
    public async Task TerminateAsync()
    {
        using var kill = Process.Start("kill", ["-TERM", _process.Id.ToString()])!;
        await kill.WaitForExitAsync();
    }

    /// <summary>SIGKILL: the agent gets no chance to log out.</summary>
    public async Task KillAsync()
    {
        _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            await KillAsync();
        }

        _process.Dispose();
        _arrived.Dispose();
    }

    private void OnLine(string? line, bool stdout)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }

        if (stdout && line.StartsWith('{'))
        {
            try
            {
                var json = JsonDocument.Parse(line).RootElement.Clone();
                lock (_events)
                {
                    _events.Add(json);
                }
            }
            catch (JsonException)
            {
                // Not an event line.
            }
        }

        _arrived.Release();
    }
}
