using System.Net.Sockets;
using System.Security.Authentication;

namespace EphemeralOrleans.Agent.Control;

/// <summary>Why a connection to the gateway failed, in a user's words (refused, timed out, DNS, TLS) instead of the
/// transport's (<c>Error connecting to subchannel.</c>).</summary>
public static class Connectivity
{
    public static string Describe(Exception? exception)
    {
        for (var current = exception; current is not null; current = current.InnerException)
        {
            switch (current)
            {
                case SocketException { SocketErrorCode: SocketError.ConnectionRefused }:
                    return "connection refused (nothing listens there: is the gateway running, and is that its port?)";
                case SocketException { SocketErrorCode: SocketError.TimedOut }:
                    return "the connection timed out";
                case SocketException { SocketErrorCode: SocketError.HostNotFound or SocketError.TryAgain or SocketError.NoData }:
                    return "the gateway's name could not be resolved (DNS)";
                case SocketException { SocketErrorCode: SocketError.NetworkUnreachable or SocketError.HostUnreachable }:
                    return "no route to the gateway (network unreachable)";
                case AuthenticationException authentication:
                    return $"TLS failed: {authentication.Message} (an https:// gateway whose certificate a private CA signed needs --ca-file)";
                case HttpRequestException { HttpRequestError: HttpRequestError.ResponseEnded }:
                    return "the connection was closed without an answer (is that port serving TLS? then use https://)";
                case HttpRequestException { HttpRequestError: HttpRequestError.NameResolutionError }:
                    return "the gateway's name could not be resolved (DNS)";
                case HttpRequestException { HttpRequestError: HttpRequestError.SecureConnectionError } secure when secure.InnerException is null:
                    return $"TLS failed: {secure.Message}";
            }
        }

        return exception?.Message ?? "no reason given";
    }

    /// <summary>The TLS handshake failed (an untrusted certificate, TLS against a cleartext port): trying again does
    /// not help, unlike a refused or broken connection.</summary>
    public static bool IsTlsFailure(Exception? exception)
    {
        for (var current = exception; current is not null; current = current.InnerException)
        {
            if (current is AuthenticationException)
            {
                return true;
            }
        }

        return false;
    }
}
