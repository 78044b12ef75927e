using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using EphemeralOrleans.Agent.Control;
using EphemeralOrleans.Protocol.V1;

namespace EphemeralOrleans.Agent.Dataplane;

/// <summary>
/// The netmap's packet filter → one nftables table of the agent's own, as an <c>nft -f</c> script that replaces the
/// previous table in one transaction. Pure: the same filter and peers give the same text (golden-file tested).
/// <para>
/// Only traffic that comes in through the agent's interface is judged; the rest of the machine is none of its
/// business. Replies to connections this node opened pass (<c>ct direction reply</c>); everything else must match a
/// rule, packet by packet — so a policy change that withdraws a permission cuts an open connection's next packets too,
/// which a blanket "established" rule would not. Then: drop. Sources are resolved against the peers: <c>*</c>, tags,
/// node names, addresses and CIDRs; ports are <c>*</c> (any protocol) or lists and ranges (TCP and UDP).
/// </para>
/// </summary>
public static class FilterCompiler
{
    /// <summary>The agent's table for <paramref name="device"/>: <c>inet eo_NAME</c> (characters nft names cannot hold become <c>_</c>).</summary>
    public static string TableName(string device) =>
        "eo_" + new string(device.Select(c => char.IsAsciiLetterOrDigit(c) || c == '_' ? c : '_').ToArray());

    public static string Compile(string device, IEnumerable<PacketFilterRule> rules, IEnumerable<NetmapNode> peers)
    {
        var table = TableName(device);
        var known = peers.ToArray();
        var script = new StringBuilder();
        // Declared first so that the delete cannot fail; the three lines are one transaction.
        script.Append(CultureInfo.InvariantCulture, $"table inet {table}\ndelete table inet {table}\n");
        script.Append(CultureInfo.InvariantCulture, $"table inet {table} {{\n");
        script.Append("\tchain inbound {\n");
        script.Append("\t\ttype filter hook input priority filter; policy accept;\n");
        script.Append(CultureInfo.InvariantCulture, $"\t\tiifname != \"{device}\" accept\n");
        script.Append("\t\tct direction reply accept\n");
        foreach (var rule in rules)
        {
            var ports = Ports(rule.Ports);
            if (ports is { Length: 0 })
            {
                continue; // nothing it could match
            }

            var match = ports is null ? "" : $" meta l4proto {{ tcp, udp }} th dport {{ {string.Join(", ", ports)} }}";
            if (rule.Sources.Contains("*"))
            {
                script.Append(CultureInfo.InvariantCulture, $"\t\t{(match.Length == 0 ? "accept" : match.TrimStart() + " accept")}\n");
                continue;
            }

            var sources = rule.Sources.SelectMany(source => Resolve(source, known)).Distinct().ToArray();
            foreach (var (family, selector) in new[] { (AddressFamily.InterNetwork, "ip"), (AddressFamily.InterNetworkV6, "ip6") })
            {
                var set = sources.Where(s => s.BaseAddress.AddressFamily == family)
                    .OrderBy(s => s.BaseAddress.ToString(), StringComparer.Ordinal).ThenBy(s => s.PrefixLength)
                    .Select(s => s.PrefixLength == (family == AddressFamily.InterNetwork ? 32 : 128) ? s.BaseAddress.ToString() : s.ToString())
                    .ToArray();
                if (set.Length > 0)
                {
                    script.Append(CultureInfo.InvariantCulture, $"\t\t{selector} saddr {{ {string.Join(", ", set)} }}{match} accept\n");
                }
            }
        }

        script.Append("\t\tcounter drop\n");
        script.Append("\t}\n}\n");
        return script.ToString();
    }

    /// <summary>Whether the filter names peers (tags, node names), so that a peer's change can change the table; one of
    /// only <c>*</c>, addresses and CIDRs does not.</summary>
    public static bool DependsOnPeers(IEnumerable<PacketFilterRule> rules) =>
        rules.SelectMany(r => r.Sources).Any(source => source != "*" && !IPAddress.TryParse(source.Split('/')[0], out _));

    /// <summary>The ports of a rule as nft set elements; null for <c>*</c> (any protocol, any port); empty when none is valid.</summary>
    private static string[]? Ports(string ports)
    {
        if (ports.Trim() == "*")
        {
            return null;
        }

        var elements = new List<string>();
        foreach (var part in ports.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var dash = part.IndexOf('-');
            if (dash < 0 && ushort.TryParse(part, CultureInfo.InvariantCulture, out var port) && port > 0)
            {
                elements.Add(port.ToString(CultureInfo.InvariantCulture));
            }
            else if (dash > 0 && ushort.TryParse(part[..dash], CultureInfo.InvariantCulture, out var low) && ushort.TryParse(part[(dash + 1)..], CultureInfo.InvariantCulture, out var high)
                && low > 0 && low <= high)
            {
                elements.Add(low == high ? low.ToString(CultureInfo.InvariantCulture) : $"{low}-{high}");
            }
        }

        return [.. elements.Distinct()];
    }

    /// <summary>What a source names: a tag's or a name's peers (both their addresses), or an address or CIDR.</summary>
    private static IEnumerable<IPNetwork> Resolve(string source, NetmapNode[] peers)
    {
        if (source.StartsWith("tag:", StringComparison.Ordinal))
        {
            return peers.Where(p => p.Wire.Tags.Contains(source)).SelectMany(Own);
        }

        var slash = source.IndexOf('/');
        if (IPAddress.TryParse(slash < 0 ? source : source[..slash], out var address))
        {
            var bits = address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128;
            var prefix = slash < 0 ? bits : int.TryParse(source[(slash + 1)..], CultureInfo.InvariantCulture, out var p) && p >= 0 && p <= bits ? p : -1;
            return prefix < 0 ? [] : [Networks.Of(address, prefix)];
        }

        return peers.Where(p => p.Name == source).SelectMany(Own);

        static IEnumerable<IPNetwork> Own(NetmapNode peer) => [new IPNetwork(peer.Ipv4, 32), new IPNetwork(peer.Ipv6, 128)];
    }

}
