using System.Globalization;
using System.Text.RegularExpressions;

namespace EphemeralOrleans.Agent.Dataplane;

/// <summary>What a WireGuard interface needs, checked before anything is made or registered, so that a machine that
/// cannot have one gets one clear line (and a node is never left half set up).</summary>
public static partial class Preflight
{
    private const int CapNetAdmin = 12;

    [GeneratedRegex(@"\A[A-Za-z0-9_.-]{1,15}\z")]
    private static partial Regex InterfaceName();

    /// <summary>The wireguard-go to run, or what is missing (with what to do about it).</summary>
    public static (string? WireGuardGo, string? Missing) Check(string device)
    {
        if (!OperatingSystem.IsLinux())
        {
            return (null, "a WireGuard interface needs Linux; use --tun none for control only.");
        }

        if (!InterfaceName().IsMatch(device) || device is "." or "..")
        {
            return (null, $"--tun '{device}' is not an interface name (1 to 15 of A-Z a-z 0-9 _ . -).");
        }

        if (!HasNetAdmin())
        {
            return (null, "creating a WireGuard interface needs root or CAP_NET_ADMIN; run with them, or use --tun none for control only.");
        }

        if (!File.Exists("/dev/net/tun"))
        {
            return (null, "/dev/net/tun is missing (a container needs --device /dev/net/tun); or use --tun none for control only.");
        }

        var missing = new[] { "wireguard-go", "ip", "nft", "setpriv" }.Where(tool => SystemTools.Find(tool) is null).ToArray();
        if (missing.Length > 0)
        {
            return (null, $"{string.Join(", ", missing)} not found on PATH (Debian: apt-get install --no-install-recommends wireguard-go iproute2 nftables util-linux); or use --tun none for control only.");
        }

        return (SystemTools.Find("wireguard-go"), null);
    }

    /// <summary>Whether this process may administer network interfaces: CAP_NET_ADMIN in its effective set.</summary>
    private static bool HasNetAdmin()
    {
        try
        {
            var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("CapEff:", StringComparison.Ordinal));
            return line is not null && (ulong.Parse(line[7..].Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture) & (1UL << CapNetAdmin)) != 0;
        }
        catch (Exception exception) when (exception is IOException or FormatException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}
