using System.Net;
using System.Net.Sockets;

namespace EphemeralOrleans.Contracts.Validation;

/// <summary>
/// Where webhooks may go: https anywhere, http only to loopback (a receiver on the same machine, tests); never to a
/// link-local or cloud metadata address (SSRF: the gateway's own credentials live there), an unspecified, multicast or
/// broadcast one — checked on the URL, and again on every address a name resolves to when a delivery connects.
/// </summary>
public static class WebhookUrls
{
    public const int MaxLength = 2048;

    private static readonly IPAddress AwsMetadataV6 = IPAddress.Parse("fd00:ec2::254");
    private static readonly string[] MetadataNames = ["metadata.google.internal", "metadata.goog", "metadata"];

    /// <summary>Null when <paramref name="url"/> may receive webhooks; else (code, why).</summary>
    public static (string Code, string Detail)? Problem(string? url)
    {
        if (string.IsNullOrWhiteSpace(url) || url.Length > MaxLength || !Uri.TryCreate(url, UriKind.Absolute, out var uri)
            || uri.Scheme is not ("https" or "http") || string.IsNullOrEmpty(uri.Host))
        {
            return ("invalid_url", $"url must be an absolute https URL (http only to loopback), at most {MaxLength} characters.");
        }

        if (uri.UserInfo.Length > 0)
        {
            return ("invalid_url", "url must not carry credentials; the webhook's signature authenticates deliveries.");
        }

        var host = uri.IdnHost.Trim('[', ']');
        if (MetadataNames.Contains(host.TrimEnd('.'), StringComparer.OrdinalIgnoreCase)
            || (IPAddress.TryParse(host, out var address) && IsForbidden(address)))
        {
            return ("forbidden_address", "url points at a link-local, metadata, unspecified, multicast or broadcast address.");
        }

        if (uri.Scheme == "http" && !IsLoopbackHost(host))
        {
            return ("invalid_url", "url must be https; plain http is only for a receiver on loopback.");
        }

        return null;
    }

    /// <summary>Addresses a delivery must never connect to, whatever name led there.</summary>
    public static bool IsForbidden(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            var b = address.GetAddressBytes();
            return b[0] == 169 && b[1] == 254 // link-local, 169.254.169.254 among them
                || b[0] == 0 // "this network", 0.0.0.0
                || b[0] >= 224; // multicast, reserved, broadcast
        }

        return address.IsIPv6LinkLocal || address.IsIPv6Multicast || address.Equals(IPAddress.IPv6Any) || address.Equals(AwsMetadataV6);
    }

    private static bool IsLoopbackHost(string host) =>
        host.Equals("localhost", StringComparison.OrdinalIgnoreCase) || (IPAddress.TryParse(host, out var address) && IPAddress.IsLoopback(address));
}
