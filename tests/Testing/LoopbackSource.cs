using System.Net;
using System.Net.Sockets;

namespace EphemeralOrleans.Testing;

/// <summary>Clients that come from a chosen loopback address (any 127.0.0.x reaches a gateway on 127.0.0.1), so that
/// one test can play several sources of traffic.</summary>
public static class LoopbackSource
{
    /// <summary>A handler whose connections come from <paramref name="source"/>.</summary>
    public static SocketsHttpHandler Handler(string source) => new()
    {
        UseCookies = false,
        AllowAutoRedirect = false,
        ConnectCallback = async (context, cancellationToken) =>
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                socket.Bind(new IPEndPoint(IPAddress.Parse(source), 0));
                await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        },
    };
}
