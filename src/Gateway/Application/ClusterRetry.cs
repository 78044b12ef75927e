using EphemeralOrleans.Gateway.Telemetry;

namespace EphemeralOrleans.Gateway.Application;

/// <summary>
/// Retries a call that failed because a silo went away under it — the message could not be delivered, or the silo
/// died with it in flight — until the cluster has rerouted (a dead silo is declared dead within seconds), for at most
/// <see cref="Hosting.GatewayOptions.ClusterRetryWindow"/>. Only for calls that are safe to repeat: the registration
/// carries its own request id, so a step that did complete is not done twice. Anything else (a refusal, a storage
/// failure, the window used up) goes to the caller as it was.
/// </summary>
public static class ClusterRetry
{
    private static readonly TimeSpan FirstDelay = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(1);

    /// <summary>Runs <paramref name="call"/> (given its attempt number, from 1), each attempt bounded by
    /// <paramref name="attemptTimeout"/>: a call forwarded to a silo that then died is answered by nobody until Orleans'
    /// response timeout (30 s), so the gateway stops waiting for it and tries again; the abandoned attempt, should it
    /// still arrive, is recognised by its lower number.</summary>
    public static async Task<T> RunAsync<T>(Func<int, Task<T>> call, TimeSpan window, TimeSpan attemptTimeout, TimeProvider time, CancellationToken cancellationToken)
    {
        var deadline = time.GetUtcNow() + window;
        var delay = FirstDelay;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await call(attempt).WaitAsync(attemptTimeout, time, cancellationToken);
            }
            catch (Exception exception) when (IsSiloLoss(exception) && time.GetUtcNow() + delay < deadline && !cancellationToken.IsCancellationRequested)
            {
                GatewayMetrics.ClusterRetry(exception.GetType().Name);
            }

            await Task.Delay(delay, time, cancellationToken);
            delay = delay * 2 < MaxDelay ? delay * 2 : MaxDelay;
        }
    }

    /// <summary>Failures that say a silo went away, not that the call was refused or storage failed.</summary>
    public static bool IsSiloLoss(Exception exception) => exception is SiloUnavailableException or OrleansMessageRejectionException
        or Orleans.Runtime.Messaging.ConnectionFailedException or GatewayTooBusyException or TimeoutException;
}
