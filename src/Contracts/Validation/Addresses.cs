using System.Buffers.Binary;
using System.Net;

namespace EphemeralOrleans.Contracts.Validation;

/// <summary>Tailnet addresses: IPv4 from a pool inside 100.64.0.0/10, IPv6 derived from it inside fd7a:115c:a1e0::/48.</summary>
public sealed class AddressPool
{
    private static readonly (uint Start, uint End) CgnatRange = (0x64400000u, 0x647FFFFFu);

    // Tailscale keeps 100.100.100.0/24 for its own services (MagicDNS at 100.100.100.100); so do we.
    private static readonly (uint Start, uint End) Reserved = (0x64646400u, 0x646464FFu);

    public AddressPool(string prefix)
    {
        var parts = prefix.Split('/');
        if (parts.Length != 2 || !IPAddress.TryParse(parts[0], out var network) || network.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork
            || !int.TryParse(parts[1], out var length) || length is < 10 or > 30)
        {
            throw new ArgumentException($"'{prefix}' is not an IPv4 prefix between /10 and /30.", nameof(prefix));
        }

        var mask = uint.MaxValue << (32 - length);
        var start = ToUInt32(network) & mask;
        var end = start | ~mask;
        if (start < CgnatRange.Start || end > CgnatRange.End)
        {
            throw new ArgumentException($"'{prefix}' is not inside 100.64.0.0/10.", nameof(prefix));
        }

        // The first and last address of the prefix are never handed out.
        First = start + 1;
        Last = end - 1;
    }

    public uint First { get; }

    public uint Last { get; }

    public long Size => (long)Last - First + 1;

    public bool IsUsable(uint address) => address >= First && address <= Last && (address < Reserved.Start || address > Reserved.End);

    public uint Random() => (uint)(First + System.Random.Shared.NextInt64(Size));

    /// <summary>The addresses a new node tries, in order: <paramref name="randomAttempts"/> random ones (in a large pool
    /// almost always free at the first), then — for a small or crowded pool — a walk from a random point over at most
    /// <paramref name="scanLimit"/> addresses. Only usable addresses; one may come twice among the random ones.</summary>
    public IEnumerable<uint> Candidates(int randomAttempts, long scanLimit)
    {
        for (var attempt = 0; attempt < randomAttempts; attempt++)
        {
            if (Random() is var candidate && IsUsable(candidate))
            {
                yield return candidate;
            }
        }

        var start = Random();
        for (long i = 0; i < Math.Min(Size, scanLimit); i++)
        {
            var candidate = (uint)(First + ((start - First + i) % Size));
            if (IsUsable(candidate))
            {
                yield return candidate;
            }
        }
    }

    public static uint ToUInt32(IPAddress address) => BinaryPrimitives.ReadUInt32BigEndian(address.GetAddressBytes());

    public static string FormatIpv4(uint address) => Ipv4Address(address).ToString();

    public static IPAddress Ipv4Address(uint address)
    {
        Span<byte> bytes = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, address);
        return new IPAddress(bytes);
    }

    /// <summary>fd7a:115c:a1e0::/48 with the IPv4 address in the last 32 bits, so IPv6 is unique exactly when IPv4 is.</summary>
    public static string FormatIpv6(uint ipv4) => Ipv6Address(ipv4).ToString();

    /// <summary>The node's IPv6 address (see <see cref="FormatIpv6"/>).</summary>
    public static IPAddress Ipv6Address(uint ipv4)
    {
        Span<byte> bytes = stackalloc byte[16];
        bytes[0] = 0xfd; bytes[1] = 0x7a; bytes[2] = 0x11; bytes[3] = 0x5c; bytes[4] = 0xa1; bytes[5] = 0xe0;
        BinaryPrimitives.WriteUInt32BigEndian(bytes[12..], ipv4);
        return new IPAddress(bytes);
    }

    /// <summary>The key of an address's lease grain: <c>{tailnet}/{IPv4}</c>.</summary>
    public static string LeaseKey(string tailnet, uint ipv4) => $"{tailnet}/{FormatIpv4(ipv4)}";

    /// <summary>The tailnet and address of a <see cref="LeaseKey"/>; false for anything else.</summary>
    public static bool TryParseLeaseKey(string key, out string tailnet, out uint ipv4)
    {
        var slash = key.LastIndexOf('/');
        (tailnet, ipv4) = ("", 0);
        if (slash <= 0 || !IPAddress.TryParse(key.AsSpan(slash + 1), out var address) || address.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork)
        {
            return false;
        }

        (tailnet, ipv4) = (key[..slash], ToUInt32(address));
        return LeaseKey(tailnet, ipv4) == key;
    }
}
