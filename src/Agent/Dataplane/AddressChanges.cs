using System.Net.NetworkInformation;

namespace EphemeralOrleans.Agent.Dataplane;

/// <summary>
/// The system's address-change notifications, subscribed once for the life of the process and never unsubscribed:
/// on Linux, removing the last subscriber while the netlink reader delivers an event deadlocks for good
/// (dotnet/runtime#131935) — seen here as an agent that never exited after SIGTERM.
/// </summary>
public static class AddressChanges
{
    private static readonly SemaphoreSlim Changed = new(0, 1);
    private static int _subscribed;

    /// <summary>True when an address changed since the last wait (or during this one), false when <paramref name="timeout"/> passed.</summary>
    public static Task<bool> WaitAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _subscribed, 1) == 0)
        {
            NetworkChange.NetworkAddressChanged += (_, _) =>
            {
                try
                {
                    Changed.Release();
                }
                catch (SemaphoreFullException)
                {
                    // Already signalled: one wake covers any number of changes.
                }
            };
        }

        return Changed.WaitAsync(timeout, cancellationToken);
    }
}
