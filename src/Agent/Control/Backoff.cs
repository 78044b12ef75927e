namespace EphemeralOrleans.Agent.Control;

/// <summary>Capped exponential backoff with jitter: each wait is between half and all of the current ceiling.</summary>
public sealed class Backoff(TimeSpan initial, TimeSpan cap)
{
    private int _attempt;

    public TimeSpan Next()
    {
        var ceiling = Math.Min(cap.TotalMilliseconds, initial.TotalMilliseconds * Math.Pow(2, Math.Min(_attempt++, 20)));
        return TimeSpan.FromMilliseconds(ceiling / 2 + Random.Shared.NextDouble() * ceiling / 2);
    }

    public void Reset() => _attempt = 0;
}
