using System.Net;
using System.Text.RegularExpressions;

namespace EphemeralOrleans.Contracts.Validation;

/// <summary>
/// Addresses as people write them: <see cref="IPAddress.TryParse(string?, out IPAddress?)"/> also reads "10.1" as
/// 10.0.0.1, "010.0.0.1" as 8.0.0.1 (octal), hex parts and a single integer — a policy naming one of those would cover
/// an address other than the one it seems to. Written as parsed means IPv4 as four decimal parts without leading zeros,
/// IPv6 without a zone, and a prefix length in plain decimal (Go's <c>netip</c>, which Tailscale uses, reads the same).
/// </summary>
public static partial class AddressText
{
    /// <summary>Whether <paramref name="text"/>, an address or a prefix that IPAddress/IPNetwork accept, means what it shows.</summary>
    public static bool IsWrittenAsParsed(string text)
    {
        var slash = text.IndexOf('/');
        var address = slash < 0 ? text : text[..slash];
        if (slash >= 0 && !PrefixLength().IsMatch(text.AsSpan(slash + 1)))
        {
            return false;
        }

        return address.Contains(':') ? !address.Contains('%') : Ipv4().IsMatch(address);
    }

    [GeneratedRegex(@"\A(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}\z")]
    private static partial Regex Ipv4();

    [GeneratedRegex(@"\A(0|[1-9][0-9]{0,2})\z")]
    private static partial Regex PrefixLength();
}
