using System.Collections.Concurrent;

namespace EphemeralOrleans.Gateway.Map;

/// <summary>
/// The threads that write a batch's messages to this gateway's streams: a wake runs a stream's writer inline, so each
/// thread writes to stream after stream. They are not the thread pool's because the pool is first come, first served:
/// a batch for 10,000 streams queued there puts everything else (the Orleans scheduler with it, so every registration)
/// behind 10,000 writes, and each of a registration's steps waited for the burst in turn (registration p99 0.4–0.7 s
/// at 10,000 streams, 0.15 s with these threads; see docs/benchmarks.md). The operating system shares the cores
/// between these threads and the pool's.
/// </summary>
internal sealed class FanoutThreads : IDisposable
{
    /// <summary>Streams a hand-over holds: small enough that the threads share a batch, large enough to cost nothing.</summary>
    public const int ChunkSize = 256;

    private readonly BlockingCollection<MapStream[]> _chunks = new();

    public FanoutThreads(int count)
    {
        for (var i = 0; i < count; i++)
        {
            new Thread(Run) { IsBackground = true, Name = $"map fan-out {i}" }.Start();
        }
    }

    /// <summary>Wakes <paramref name="streams"/> on these threads.</summary>
    public void Wake(List<MapStream> streams)
    {
        foreach (var chunk in streams.Chunk(ChunkSize))
        {
            if (!TryQueue(chunk))
            {
                // Stopped (the gateway is shutting down): the writers still get to see that their streams ended.
                ThreadPool.UnsafeQueueUserWorkItem(static c => WakeAll(c), chunk, preferLocal: false);
            }
        }
    }

    public void Dispose() => _chunks.CompleteAdding();

    private bool TryQueue(MapStream[] chunk)
    {
        try
        {
            return _chunks.TryAdd(chunk);
        }
        catch (InvalidOperationException)
        {
            return false; // completed for adding, which TryAdd reports by throwing
        }
    }

    private void Run()
    {
        foreach (var chunk in _chunks.GetConsumingEnumerable())
        {
            WakeAll(chunk);
        }
    }

    private static void WakeAll(MapStream[] chunk)
    {
        foreach (var stream in chunk)
        {
            stream.Wake();
        }
    }
}
