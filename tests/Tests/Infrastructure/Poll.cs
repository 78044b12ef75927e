using System.Diagnostics;

namespace EphemeralOrleans.Tests.Infrastructure;

/// <summary>Waiting on something that happens in its own time: poll, with a deadline, never a bare sleep.</summary>
public static class Poll
{
    /// <summary>Polls until <paramref name="probe"/> yields a value, and returns it.</summary>
    public static async Task<T> UntilValueAsync<T>(Func<Task<T?>> probe, TimeSpan within, string what, int everyMs = 50)
        where T : struct
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            if (await probe() is { } value)
            {
                return value;
            }

            if (clock.Elapsed > within)
            {
                Assert.Fail($"Timed out after {within} waiting for {what}.");
            }

            await Task.Delay(everyMs);
        }
    }

    /// <summary>Polls until <paramref name="condition"/> holds; returns how long it took; fails after <paramref name="within"/>.</summary>
    public static async Task<TimeSpan> UntilAsync(Func<Task<bool>> condition, TimeSpan within, string what, int everyMs = 50, Func<string>? why = null)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            if (clock.Elapsed > within)
            {
                Assert.Fail($"Timed out after {within} waiting for {what}.{(why is null ? "" : " " + why())}");
            }

            await Task.Delay(everyMs);
        }

        return clock.Elapsed;
    }
}
