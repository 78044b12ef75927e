using System.Buffers;
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

    private readonly BlockingCollection<Chunk> _chunks = new();

    public FanoutThreads(int count)
    {
        for (var i = 0; i < count; i++)
        {
            new Thread(Run) { IsBackground = true, Name = $"map fan-out {i}" }.Start();
        }
    }

    /// <summary>Wakes <paramref name="streams"/> on these threads (copied: the list may be reused at once).</summary>
    public void Wake(List<MapStream> streams)
    {
        for (var start = 0; start < streams.Count; start += ChunkSize)
        {
            var count = Math.Min(ChunkSize, streams.Count - start);
            var chunk = new Chunk(ArrayPool<MapStream>.Shared.Rent(count), count);
            streams.CopyTo(start, chunk.Streams, 0, count);
            if (!TryQueue(chunk))
            {
                // Stopped (the gateway is shutting down): the writers still get to see that their streams ended.
                ThreadPool.UnsafeQueueUserWorkItem(static c => WakeAll(c), chunk, preferLocal: false);
            }
        }
    }

    public void Dispose() => _chunks.CompleteAdding();

    private bool TryQueue(Chunk chunk)
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

    private static void WakeAll(Chunk chunk)
    {
        try
        {
            for (var i = 0; i < chunk.Count; i++)
            {
                chunk.Streams[i].Wake();
            }
        }
        finally
        {
            // Pooled, because a batch for 10,000 streams is 40 of them; cleared, so the pool keeps no stream alive.
            Array.Clear(chunk.Streams, 0, chunk.Count);
            ArrayPool<MapStream>.Shared.Return(chunk.Streams);
        }
    }

    /// <summary>The first <see cref="Count"/> of a pooled array.</summary>
    private readonly record struct Chunk(MapStream[] Streams, int Count);
}
