using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;

namespace EphemeralOrleans.Agent.Dataplane;

/// <summary>
/// Where this node's WireGuard can be reached: every address of the interfaces that are up, with the listen port.
/// Left out: loopback, link-local, multicast, the tailnet's own ranges (the tunnel's addresses), and the agent's
/// own tunnel interface. At most <see cref="MaxCount"/>, IPv4 first, so the list is stable while nothing changes.
/// </summary>
public static class LocalEndpoints
{
    public const int MaxCount = 16;

    private static readonly IPNetwork TailnetV4 = IPNetwork.Parse("100.64.0.0/10");
    private static readonly IPNetwork TailnetV6 = IPNetwork.Parse("fd7a:115c:a1e0::/48");

    public static string[] Discover(int listenPort, string? tunnelInterface = null)
    {
        var addresses = new List<IPAddress>();
        foreach (var networkInterface in NetworkInterface.GetAllNetworkInterfaces())
        {
            if (networkInterface.NetworkInterfaceType == NetworkInterfaceType.Loopback || networkInterface.Name == tunnelInterface
                || networkInterface.OperationalStatus is not (OperationalStatus.Up or OperationalStatus.Unknown))
            {
                continue;
            }

            foreach (var unicast in networkInterface.GetIPProperties().UnicastAddresses)
            {
                if (Usable(unicast.Address))
                {
                    addresses.Add(unicast.Address);
                }
            }
        }

        return addresses
            .Distinct()
            .OrderBy(a => a.AddressFamily == AddressFamily.InterNetwork ? 0 : 1)
            .ThenBy(a => a.ToString(), StringComparer.Ordinal)
            .Take(MaxCount)
            .Select(a => new IPEndPoint(a, listenPort).ToString())
            .ToArray();
    }

    /// <summary>The subnets this machine is on (its interfaces' addresses with their prefix lengths).</summary>
    public static IReadOnlyCollection<IPNetwork> Subnets()
    {
        var subnets = new List<IPNetwork>();
        foreach (var networkInterface in NetworkInterface.GetAllNetworkInterfaces())
        {
            if (networkInterface.NetworkInterfaceType == NetworkInterfaceType.Loopback)
            {
                continue;
            }

            foreach (var unicast in networkInterface.GetIPProperties().UnicastAddresses)
            {
                if (Usable(unicast.Address) && unicast.PrefixLength > 0)
                {
                    subnets.Add(Networks.Of(unicast.Address, unicast.PrefixLength));
                }
            }
        }

        return subnets;
    }

    private static bool Usable(IPAddress address) =>
        !IPAddress.IsLoopback(address) && !address.IsIPv6LinkLocal && !address.IsIPv6Multicast && !address.IsIPv6SiteLocal
        && !(address.AddressFamily == AddressFamily.InterNetwork && address.GetAddressBytes() is [169, 254, _, _])
        && !TailnetV4.Contains(address) && !TailnetV6.Contains(address);
}
