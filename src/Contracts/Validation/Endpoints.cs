using System.Net;
using System.Net.Sockets;
using EphemeralOrleans.Contracts.Model;

namespace EphemeralOrleans.Contracts.Validation;

/// <summary>
/// The UDP endpoints a node's WireGuard listens on, as its agent reports them: <c>ip:port</c> (IPv6 in brackets), at
/// most <see cref="MaxCount"/>, each an address a peer could send to — not loopback, multicast, unspecified,
/// broadcast or link-local, and not inside the tailnet's own ranges (a tunnel must not run through itself).
/// </summary>
public static class Endpoints
{
    public const int MaxCount = 16;
    private const int MaxLength = 64;

    private static readonly IPNetwork TailnetV4 = IPNetwork.Parse("100.64.0.0/10");
    private static readonly IPNetwork TailnetV6 = IPNetwork.Parse("fd7a:115c:a1e0::/48");

    /// <summary>The endpoints, normalized (IPv4-mapped IPv6 as IPv4) and without duplicates, in the order given; or
    /// the first reason one is refused.</summary>
    public static bool TryParse(IReadOnlyCollection<string>? texts, out ValueList<IPEndPoint> endpoints, out string error)
    {
        endpoints = ValueList<IPEndPoint>.Empty;
        texts ??= [];
        if (texts.Count > MaxCount)
        {
            error = $"At most {MaxCount} endpoints, not {texts.Count}.";
            return false;
        }

        var parsed = new List<IPEndPoint>(texts.Count);
        foreach (var text in texts)
        {
            if (Refusal(text, out var endpoint) is { } reason)
            {
                error = $"Endpoint '{Printable(text)}': {reason}";
                return false;
            }

            if (!parsed.Contains(endpoint!))
            {
                parsed.Add(endpoint!);
            }
        }

        endpoints = new ValueList<IPEndPoint>(parsed);
        error = "";
        return true;
    }

    private static string? Refusal(string? text, out IPEndPoint? endpoint)
    {
        endpoint = null;
        if (string.IsNullOrEmpty(text) || text.Length > MaxLength)
        {
            return "expected ip:port.";
        }

        // IPEndPoint.TryParse takes a bare address (port 0) and IPv6 without brackets; the contract wants both parts.
        var colon = text.LastIndexOf(':');
        var host = colon > 0 ? text[..colon] : "";
        var ipv6 = host.StartsWith('[') && host.EndsWith(']');
        if (colon <= 0 || (host.Contains(':') && !ipv6) || !ushort.TryParse(text.AsSpan(colon + 1), out var port) || port == 0
            || text[(colon + 1)..].Any(c => !char.IsAsciiDigit(c))
            || !IPAddress.TryParse(ipv6 ? host[1..^1] : host, out var address) || !AddressText.IsWrittenAsParsed(ipv6 ? host[1..^1] : host)
            || (address.AddressFamily == AddressFamily.InterNetworkV6) != ipv6
            || (ipv6 && address.ScopeId != 0))
        {
            return "expected ip:port with a port from 1 to 65535 (IPv6 as [address]:port).";
        }

        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        if (IPAddress.IsLoopback(address) || address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any) || address.Equals(IPAddress.Broadcast)
            || address.IsIPv6Multicast || address.IsIPv6LinkLocal
            || (address.AddressFamily == AddressFamily.InterNetwork && (address.GetAddressBytes()[0] is >= 224 and <= 239 || IsIpv4LinkLocal(address))))
        {
            return "not an address peers can reach (loopback, unspecified, broadcast, multicast or link-local).";
        }

        if (TailnetV4.Contains(address) || TailnetV6.Contains(address))
        {
            return "inside the tailnet's own ranges: a tunnel cannot run through itself.";
        }

        endpoint = new IPEndPoint(address, port);
        return null;
    }

    private static bool IsIpv4LinkLocal(IPAddress address) => address.GetAddressBytes() is [169, 254, _, _];

    private static string Printable(string? text) =>
        text is null ? "" : new string(text.Take(MaxLength).Select(c => char.IsControl(c) ? '?' : c).ToArray());

    /// <summary>The text form of an endpoint: <c>1.2.3.4:41641</c> or <c>[2001:db8::1]:41641</c>.</summary>
    public static string Format(IPEndPoint endpoint) => endpoint.ToString();
}
