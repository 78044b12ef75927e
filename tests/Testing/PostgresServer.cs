using System.Diagnostics;
using Npgsql;

namespace EphemeralOrleans.Testing;

/// <summary>
/// A throwaway PostgreSQL cluster: <c>initdb</c> into a temporary directory, <c>postgres</c> on a free loopback port,
/// removed on dispose. As root, the server runs as the <c>postgres</c> user (initdb refuses root).
/// </summary>
public sealed class PostgresServer : IAsyncDisposable
{
    private readonly string _directory;
    private readonly Func<Process> _launch;
    private Process _process;

    private PostgresServer(Func<Process> launch, string directory, int port)
    {
        _launch = launch;
        _process = launch();
        _directory = directory;
        Port = port;
    }

    public int Port { get; }

    public string AdminConnectionString => $"Host=127.0.0.1;Port={Port};Username=postgres;Database=postgres;Pooling=false";

    public string ConnectionString(string database) => $"Host=127.0.0.1;Port={Port};Username=postgres;Database={database}";

    /// <summary>Where initdb and postgres live, or null when PostgreSQL is not installed.</summary>
    public static string? FindBinaries() =>
        Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").OrderByDescending(d => d)
                .Select(d => Path.Combine(d, "bin")).FirstOrDefault(d => File.Exists(Path.Combine(d, "initdb")))
            : null;

    /// <summary>Why PostgreSQL tests cannot run here, or null when they can.</summary>
    public static string? UnavailableReason() =>
        FindBinaries() is null ? "PostgreSQL binaries (/usr/lib/postgresql/*/bin/initdb) are not installed" : null;

    /// <param name="durable">False turns fsync off: faster, and enough where only the processes above it crash.</param>
    public static async Task<PostgresServer> StartAsync(bool durable = false)
    {
        var bin = FindBinaries() ?? throw new InvalidOperationException(UnavailableReason());
        var directory = Directory.CreateTempSubdirectory("eo-pg-").FullName;
        var data = Path.Combine(directory, "data");
        var asRoot = Environment.UserName == "root";
        if (asRoot)
        {
            await RunAsync("chown", "-R", "postgres:postgres", directory);
        }

        await RunAsync(Command(asRoot, Path.Combine(bin, "initdb")), [.. Prefix(asRoot, Path.Combine(bin, "initdb")),
            "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]);
        var port = FreePort.Next();
        string[] serverArgs = ["-D", data, "-p", port.ToString(), "-k", directory, "-c", "listen_addresses=127.0.0.1",
            "-c", "max_connections=500", "-c", $"fsync={(durable ? "on" : "off")}", "-c", "shared_buffers=128MB"];
        Process Launch()
        {
            var start = new ProcessStartInfo(Command(asRoot, Path.Combine(bin, "postgres")))
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            };
            foreach (var arg in Prefix(asRoot, Path.Combine(bin, "postgres")).Concat(serverArgs))
            {
                start.ArgumentList.Add(arg);
            }

            var process = Process.Start(start) ?? throw new InvalidOperationException("postgres did not start");
            process.ErrorDataReceived += (_, _) => { };
            process.OutputDataReceived += (_, _) => { };
            process.BeginErrorReadLine();
            process.BeginOutputReadLine();
            return process;
        }

        var server = new PostgresServer(Launch, directory, port);
        await server.WaitReadyAsync();
        return server;
    }

    /// <summary>Kills the server (SIGKILL: no shutdown checkpoint, recovery from the WAL on start).</summary>
    public async Task KillAsync()
    {
        _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
    }

    /// <summary>Starts the server again on the same data directory and port.</summary>
    public async Task StartAgainAsync()
    {
        _process.Dispose();
        _process = _launch();
        await WaitReadyAsync();
    }

    /// <summary>Creates an empty database and returns its connection string.</summary>
    public async Task<string> CreateDatabaseAsync(string name)
    {
        await using var connection = new NpgsqlConnection(AdminConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", connection);
        await command.ExecuteNonQueryAsync();
        return ConnectionString(name);
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }
        catch (InvalidOperationException)
        {
        }

        _process.Dispose();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private async Task WaitReadyAsync()
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            try
            {
                await using var connection = new NpgsqlConnection(AdminConnectionString);
                await connection.OpenAsync();
                return;
            }
            catch (Exception) when (DateTime.UtcNow < deadline && !_process.HasExited)
            {
                await Task.Delay(100);
            }
        }
    }

    private static string Command(bool asRoot, string program) => asRoot ? "runuser" : program;

    private static string[] Prefix(bool asRoot, string program) => asRoot ? ["-u", "postgres", "--", program] : [];

    private static async Task RunAsync(string program, params string[] args)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', args)} failed ({process.ExitCode}): {await error}{await output}");
        }
    }
}
