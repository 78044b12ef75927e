using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace EphemeralOrleans.Testing;

/// <summary>
/// <c>tests/WebhookReceiver/receiver.js</c> as a real Node.js process: it verifies each delivery with the
/// <c>standardwebhooks</c> npm library and reports it as a JSON line. Its packages are installed on first use
/// (<c>npm ci</c>, from the lock file).
/// </summary>
public sealed class WebhookReceiver : IAsyncDisposable
{
    private static readonly SemaphoreSlim Install = new(1, 1);
    private readonly Process _process;
    private readonly List<JsonElement> _lines = [];
    private readonly StringBuilder _errors = new();

    private WebhookReceiver(Process process) => _process = process;

    /// <summary>Every delivery so far, in arrival order: <c>{ok, id, eventId, type, data}</c> or <c>{ok:false, error}</c>.</summary>
    public JsonElement[] Deliveries
    {
        get
        {
            lock (_lines)
            {
                return _lines.Where(l => l.TryGetProperty("ok", out _)).ToArray();
            }
        }
    }

    public string Errors
    {
        get
        {
            lock (_errors)
            {
                return _errors.ToString();
            }
        }
    }

    /// <summary>Listens on 127.0.0.1:<paramref name="port"/>; answers verified deliveries 204, or <paramref name="failStatus"/>.</summary>
    public static async Task<WebhookReceiver> StartAsync(int port, string secret, int? failStatus = null)
    {
        var directory = Path.Combine(HostProcess.RepositoryRoot(), "tests", "WebhookReceiver");
        await EnsurePackagesAsync(directory);
        var start = new ProcessStartInfo("node") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = directory };
        start.ArgumentList.Add("receiver.js");
        start.ArgumentList.Add(port.ToString(System.Globalization.CultureInfo.InvariantCulture));
        start.ArgumentList.Add(secret);
        if (failStatus is { } status)
        {
            start.ArgumentList.Add(status.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        var receiver = new WebhookReceiver(Process.Start(start)!);
        receiver._process.OutputDataReceived += (_, e) => receiver.OnLine(e.Data);
        receiver._process.ErrorDataReceived += (_, e) =>
        {
            lock (receiver._errors)
            {
                receiver._errors.AppendLine(e.Data);
            }
        };
        receiver._process.BeginOutputReadLine();
        receiver._process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!receiver.Listening)
        {
            if (receiver._process.HasExited || DateTime.UtcNow > deadline)
            {
                throw new InvalidOperationException($"The webhook receiver did not start: {receiver.Errors}");
            }

            await Task.Delay(20);
        }

        return receiver;
    }

    private bool Listening
    {
        get
        {
            lock (_lines)
            {
                return _lines.Any(l => l.TryGetProperty("listening", out _));
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }

    private void OnLine(string? line)
    {
        if (string.IsNullOrWhiteSpace(line))
        {
            return;
        }

        lock (_lines)
        {
            _lines.Add(JsonDocument.Parse(line).RootElement.Clone());
        }
    }

    private static async Task EnsurePackagesAsync(string directory)
    {
        await Install.WaitAsync();
        try
        {
            if (Directory.Exists(Path.Combine(directory, "node_modules", "standardwebhooks")))
            {
                return;
            }

            var start = new ProcessStartInfo("npm", "ci --no-audit --no-fund") { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
            using var npm = Process.Start(start)!;
            var output = npm.StandardOutput.ReadToEndAsync();
            var errors = npm.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
            await npm.WaitForExitAsync(timeout.Token);
            if (npm.ExitCode != 0)
            {
                throw new InvalidOperationException($"npm ci failed in {directory}: {await output}{await errors}");
            }
        }
        finally
        {
            Install.Release();
        }
    }
}
