using System.Net;

namespace EphemeralOrleans.Agent.Dataplane;

/// <summary>The device's addresses and the routes into it, through <c>ip</c> (the shape of Tailscale's
/// <c>wgengine/router</c>): only what changed is touched, so a netmap delta never flaps the interface.</summary>
public sealed class Router(string device)
{
    private IReadOnlyCollection<IPNetwork> _addresses = [];
    private IReadOnlyCollection<IPNetwork> _routes = [];

    /// <summary>Gives the device <paramref name="addresses"/> and <paramref name="routes"/>, changing only the difference.</summary>
    public async Task SetAsync(IReadOnlyCollection<IPNetwork> addresses, IReadOnlyCollection<IPNetwork> routes, CancellationToken cancellationToken)
    {
        foreach (var gone in _routes.Except(routes))
        {
            await SystemTools.TryRunAsync("ip", ["route", "del", gone.ToString(), "dev", device], cancellationToken: cancellationToken);
        }

        foreach (var gone in _addresses.Except(addresses))
        {
            await SystemTools.TryRunAsync("ip", ["addr", "del", gone.ToString(), "dev", device], cancellationToken: cancellationToken);
        }

        foreach (var added in addresses.Except(_addresses))
        {
            // nodad: the address is ours alone on a point-to-point device; waiting for duplicate detection only delays IPv6.
            await SystemTools.RunAsync("ip", added.BaseAddress.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6
                ? ["addr", "replace", added.ToString(), "dev", device, "nodad"]
                : ["addr", "replace", added.ToString(), "dev", device], cancellationToken: cancellationToken);
        }

        foreach (var added in routes.Except(_routes))
        {
            await SystemTools.RunAsync("ip", ["route", "replace", added.ToString(), "dev", device], cancellationToken: cancellationToken);
        }

        (_addresses, _routes) = (addresses.ToArray(), routes.ToArray());
    }
}
