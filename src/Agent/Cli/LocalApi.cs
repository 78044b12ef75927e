using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using EphemeralOrleans.Agent.Control;

namespace EphemeralOrleans.Agent.Cli;

/// <summary>
/// The running agent's local control socket (a Unix domain socket, like tailscaled's LocalAPI): <c>status</c>,
/// <c>netmap</c> and <c>logout</c> ask the agent that is up, one request line and one JSON answer line each. An agent
/// claims its socket before it does anything else, so a second agent on the same socket stops before it registers.
/// </summary>
public sealed class LocalApi : IAsyncDisposable
{
    private static readonly TimeSpan AnswerDeadline = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan DrainDeadline = TimeSpan.FromSeconds(5);

    private readonly string _path;
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<Task> _connections = [];
    private Task _accepting = Task.CompletedTask;

    private LocalApi(string path, Socket listener)
    {
        _path = path;
        _listener = listener;
    }

    public static string DefaultSocket => Path.Combine(Path.GetTempPath(), $"eo-agent-{Environment.UserName}.sock");

    /// <summary>Binds <paramref name="path"/>; a socket left by an agent that died is taken over, one an agent answers on is not.</summary>
    /// <exception cref="AgentFailure"><c>agent_running</c> when another agent is up on it; <c>socket_unusable</c> when it cannot be bound.</exception>
    public static async Task<LocalApi> ClaimAsync(string path)
    {
        if (File.Exists(path))
        {
            if (await TryAskAsync(path, "ping", CancellationToken.None) is not null)
            {
                throw new AgentFailure("agent_running", $"Another agent is up on {path}; stop it first, or give this one its own --socket.", transient: false);
            }

            File.Delete(path);
        }

        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException exception)
        {
            listener.Dispose();
            throw exception.SocketErrorCode == SocketError.AddressAlreadyInUse
                ? new AgentFailure("agent_running", $"Another agent is up on {path}; stop it first, or give this one its own --socket.", transient: false)
                : new AgentFailure("socket_unusable", $"Cannot listen on {path}: {exception.Message}", transient: false);
        }

        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }

        listener.Listen(16);
        return new LocalApi(path, listener);
    }

    /// <summary>Answers requests with <paramref name="handle"/> (<c>ping</c> is answered here) until disposed.</summary>
    public void Serve(Func<string, Task<object>> handle) => _accepting = Task.Run(async () =>
    {
        try
        {
            while (true)
            {
                var connection = await _listener.AcceptAsync(_stopping.Token);
                lock (_connections)
                {
                    _connections.RemoveAll(c => c.IsCompleted);
                    _connections.Add(ServeAsync(connection, handle));
                }
            }
        }
        catch (Exception exception) when (exception is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    });

    /// <summary>Stops accepting, lets the requests in flight answer (a <c>logout</c> waits for its outcome), and removes the socket.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        await _accepting;
        Task[] inFlight;
        lock (_connections)
        {
            inFlight = [.. _connections];
        }

        await Task.WhenAny(Task.WhenAll(inFlight), Task.Delay(DrainDeadline));
        _listener.Dispose();
        File.Delete(_path);
        _stopping.Dispose();
    }

    /// <summary>Asks the agent up on <paramref name="path"/>; null when none answers. Only <c>ping</c> has a deadline:
    /// a <c>logout</c> takes as long as the agent's logout does.</summary>
    public static async Task<JsonElement?> TryAskAsync(string path, string request, CancellationToken cancellationToken)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        if (request == "ping")
        {
            deadline.CancelAfter(AnswerDeadline);
        }

        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), deadline.Token);
            await using var stream = new NetworkStream(socket, ownsSocket: false);
            await stream.WriteAsync(Encoding.UTF8.GetBytes(request + "\n"), deadline.Token);
            using var reader = new StreamReader(stream);
            var line = await reader.ReadLineAsync(deadline.Token);
            return line is null ? null : JsonDocument.Parse(line).RootElement.Clone();
        }
        catch (Exception exception) when (exception is SocketException or IOException
            || (exception is OperationCanceledException && !cancellationToken.IsCancellationRequested))
        {
            return null;
        }
    }

    private static async Task ServeAsync(Socket connection, Func<string, Task<object>> handle)
    {
        using (connection)
        {
            try
            {
                await using var stream = new NetworkStream(connection, ownsSocket: false);
                using var reader = new StreamReader(stream);
                var request = (await reader.ReadLineAsync())?.Trim() ?? "";
                var answer = request == "ping" ? new { ok = true } : await handle(request);
                await stream.WriteAsync(JsonSerializer.SerializeToUtf8Bytes(answer, AgentOutput.Json));
                await stream.WriteAsync("\n"u8.ToArray());
            }
            catch (Exception exception) when (exception is IOException or SocketException)
            {
                // The asker went away; nothing to answer.
            }
        }
    }
}
