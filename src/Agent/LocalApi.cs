using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace EphemeralOrleans.Agent;

/// <summary>
/// The running agent's local control socket (a Unix domain socket, like tailscaled's LocalAPI): <c>status</c>,
/// <c>netmap</c> and <c>logout</c> ask the agent that is up, one request line and one JSON answer line each.
/// </summary>
public static class LocalApi
{
    public static string DefaultSocket => Path.Combine(Path.GetTempPath(), $"eo-agent-{Environment.UserName}.sock");

    /// <summary>Serves requests on <paramref name="path"/> until cancelled; refuses to take over a socket an agent answers on.</summary>
    public static async Task<Task> StartAsync(string path, Func<string, Task<object>> handle, CancellationToken cancellationToken)
    {
        if (File.Exists(path))
        {
            if (await TryAskAsync(path, "ping", CancellationToken.None) is not null)
            {
                throw new InvalidOperationException($"Another agent is up on {path}; use --socket to run a second one.");
            }

            File.Delete(path);
        }

        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }

        listener.Listen(16);
        return Task.Run(async () =>
        {
            try
            {
                while (!cancellationToken.IsCancellationRequested)
                {
                    var connection = await listener.AcceptAsync(cancellationToken);
                    _ = ServeAsync(connection, handle);
                }
            }
            catch (OperationCanceledException)
            {
            }
            finally
            {
                listener.Dispose();
                File.Delete(path);
            }
        }, CancellationToken.None);
    }

    /// <summary>Asks the agent up on <paramref name="path"/>; null when none answers.</summary>
    public static async Task<JsonElement?> TryAskAsync(string path, string request, CancellationToken cancellationToken)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken);
        }
        catch (SocketException)
        {
            return null;
        }

        await using var stream = new NetworkStream(socket, ownsSocket: false);
        await stream.WriteAsync(Encoding.UTF8.GetBytes(request + "\n"), cancellationToken);
        using var reader = new StreamReader(stream);
        var line = await reader.ReadLineAsync(cancellationToken);
        return line is null ? null : JsonDocument.Parse(line).RootElement.Clone();
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
