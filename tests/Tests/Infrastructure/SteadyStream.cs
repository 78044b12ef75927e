using System.Diagnostics;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace EphemeralOrleans.Tests.Infrastructure;

/// <summary>
/// A steady stream over an open TCP connection, from <c>sender</c> to <c>receiver</c>: 16 KiB every 16 ms (about
/// 1 MB/s) of seeded pseudo-random bytes. The receiver hashes what arrives and notes the longest pause between
/// arrivals, so a test can change the path under it and then check that every byte arrived, in order.
/// </summary>
public sealed class SteadyStream : IDisposable
{
    private const int Chunk = 16 * 1024;
    private readonly CancellationTokenSource _stop = new();
    private readonly IncrementalHash _sentHash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private readonly IncrementalHash _receivedHash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private readonly Socket _sender;
    private readonly Task _sending;
    private readonly Task _receiving;
    private long _sent;
    private long _received;
    private long _longestPauseTicks;

    public SteadyStream(Socket sender, Socket receiver)
    {
        _sender = sender;
        _sending = Task.Run(() => SendAsync(sender));
        _receiving = Task.Run(() => ReceiveAsync(receiver));
    }

    public long Received => Interlocked.Read(ref _received);

    /// <summary>The longest time between two arrivals so far.</summary>
    public TimeSpan LongestPause => TimeSpan.FromTicks(Interlocked.Read(ref _longestPauseTicks));

    public async Task WaitForBytesAsync(long bytes, TimeSpan within) =>
        await Poll.UntilAsync(() => Task.FromResult(Received >= bytes || _receiving.IsCompleted), within, $"{bytes} bytes of the stream (have {Received})", everyMs: 20);

    /// <summary>Stops sending, waits for the rest to arrive and checks that what arrived is what was sent.</summary>
    public async Task StopAndVerifyAsync(TimeSpan within)
    {
        await _stop.CancelAsync();
        await _sending.WaitAsync(within);
        _sender.Shutdown(SocketShutdown.Send);
        await _receiving.WaitAsync(within);
        Assert.Equal(_sent, _received);
        Assert.Equal(_sentHash.GetHashAndReset(), _receivedHash.GetHashAndReset());
    }

    public void Dispose()
    {
        _stop.Cancel();
        _stop.Dispose();
    }

    private async Task SendAsync(Socket socket)
    {
        var random = new Random(20);
        var buffer = new byte[Chunk];
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(16));
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token))
            {
                random.NextBytes(buffer);
                // Not cancelled midway: what is hashed is what was sent.
                var sent = await socket.SendAsync(buffer);
                _sentHash.AppendData(buffer, 0, sent);
                _sent += sent;
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task ReceiveAsync(Socket socket)
    {
        var buffer = new byte[64 * 1024];
        var clock = Stopwatch.StartNew();
        var last = TimeSpan.Zero;
        while (true)
        {
            var read = await socket.ReceiveAsync(buffer);
            if (read == 0)
            {
                return;
            }

            var now = clock.Elapsed;
            if (_received > 0 && (now - last).Ticks > _longestPauseTicks)
            {
                Interlocked.Exchange(ref _longestPauseTicks, (now - last).Ticks);
            }

            last = now;
            _receivedHash.AppendData(buffer, 0, read);
            Interlocked.Add(ref _received, read);
        }
    }
}
