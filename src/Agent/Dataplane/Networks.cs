using System.Net;

namespace EphemeralOrleans.Agent.Dataplane;

public static class Networks
{
    /// <summary>The network of <paramref name="address"/> with host bits cleared (<c>10.1.2.3/8</c> is <c>10.0.0.0/8</c>).</summary>
    public static IPNetwork Of(IPAddress address, int prefix)
    {
        var bytes = address.GetAddressBytes();
        for (var bit = prefix; bit < bytes.Length * 8; bit++)
        {
            bytes[bit / 8] &= (byte)~(0x80 >> (bit % 8));
        }

        return new IPNetwork(new IPAddress(bytes), prefix);
    }
}
