using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;

namespace EphemeralOrleans.Gateway.Map;

/// <summary>
/// One agent's open netmap stream on this gateway: a bounded queue of messages fed by its tailnet's feed (which node it
/// serves, and its class, are the feed's: <see cref="MapSubscriber"/>). A stream that falls behind is not allowed to hold
/// anything up: it is marked for a reset and gets a fresh full map.
/// <para>
/// Its writer waits for messages without holding a thread, and a wake runs it inline, on the waking thread, until it
/// waits again: a feed's batch wakes its streams from the <see cref="FanoutThreads"/> (see <see cref="StreamWakes"/>).
/// </para>
/// <para>
/// A wait allocates nothing: the stream is its own reusable wait (<see cref="IValueTaskSource"/>) and its writer's
/// state machine comes from a pool. At 10,000 streams each message of a batch is 10,000 waits; a task and a state
/// machine for each were 40 % of the gateway's allocations, and the garbage collections they caused paused every
/// stream (docs/benchmarks.md).
/// </para>
/// </summary>
internal sealed class MapStream(int capacity) : IValueTaskSource, IDisposable
{
    private readonly Lock _gate = new();
    private readonly Queue<MapMessage> _queue = new();

    /// <summary>The writer's wait; completed inline by a wake, so a batch runs the writer on the waking thread.</summary>
    private ManualResetValueTaskSourceCore<bool> _wait;
    private bool _waiting;
    private CancellationToken _cancelledBy;
    private CancellationTokenRegistration _cancellation;
    private bool _wakeRequested;
    private bool _resetPending;
    private bool _closed;
    private long _lastSentAt = Environment.TickCount64;

    /// <summary>Messages waiting to be sent.</summary>
    public int Pending
    {
        get
        {
            lock (_gate)
            {
                return _queue.Count;
            }
        }
    }

    /// <summary>Whether the writer waits for a message.</summary>
    public bool IsWaiting
    {
        get
        {
            lock (_gate)
            {
                return _waiting;
            }
        }
    }

    /// <summary>Why the stream ended, once it has.</summary>
    public string? ClosedBecause { get; private set; }

    /// <summary>The next message to send, or null once the stream is closed and drained. A stream that overflowed gets,
    /// instead of what was queued, a fresh full map from <paramref name="fullMap"/>. One call at a time (one writer).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<MapMessage?> NextAsync(Func<FullMapMessage> fullMap, CancellationToken cancellationToken)
    {
        while (true)
        {
            switch (Take(out var message, out var version))
            {
                case Taken.Message:
                    return message;
                case Taken.Closed:
                    return null;
                case Taken.Reset:
                    // Built outside this stream's lock: the feed's lock is always taken before it, never after.
                    return fullMap();
            }

            ObserveCancellation(cancellationToken);
            if (cancellationToken.IsCancellationRequested && StopWaiting())
            {
                // Cancelled before this wait began: the token's callback found no wait to end, so it is ended here.
                throw new OperationCanceledException(cancellationToken);
            }

            await new ValueTask(this, version);
        }
    }

    /// <summary>Queues a keepalive when nothing was sent for <paramref name="silence"/> and nothing waits to be
    /// (checked by the gateway's sweep, so that waiting for the next message costs no timer per wait).</summary>
    public void KeepAliveIfSilent(long nowMilliseconds, TimeSpan silence)
    {
        long late;
        lock (_gate)
        {
            late = nowMilliseconds - _lastSentAt - (long)silence.TotalMilliseconds;
            if (late < 0 || _queue.Count > 0)
            {
                return;
            }

            // Once per silence: the next sweep must not queue another before this one is sent.
            _lastSentAt = nowMilliseconds;
            if (!EnqueueLocked(KeepAliveMessage.Instance))
            {
                return;
            }
        }

        Telemetry.GatewayMetrics.KeepAliveQueued(TimeSpan.FromMilliseconds(late));
        StreamWakes.Wake(this);
    }

    public void Enqueue(MapMessage message)
    {
        lock (_gate)
        {
            if (!EnqueueLocked(message))
            {
                return;
            }
        }

        StreamWakes.Wake(this);
    }

    public void Close(string reason)
    {
        lock (_gate)
        {
            ClosedBecause ??= reason;
            _closed = true;
            if (!RequestWake())
            {
                return;
            }
        }

        StreamWakes.Wake(this);
    }

    /// <summary>Lets go of the writer's cancellation token, once the writer is done.</summary>
    public void Dispose() => _cancellation.Dispose();

    /// <summary>Resumes the writer if it waits for a message (inline: see the class summary).</summary>
    public void Wake()
    {
        if (StopWaiting())
        {
            _wait.SetResult(true);
        }
    }

    /// <summary>Takes the writer's wait over (a wake on its way then finds none); false when a wake or a cancellation
    /// already has it. Whoever gets true completes the wait.</summary>
    private bool StopWaiting()
    {
        lock (_gate)
        {
            _wakeRequested = false;
            var waiting = _waiting;
            _waiting = false;
            return waiting;
        }
    }

    void IValueTaskSource.GetResult(short token) => _wait.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _wait.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _wait.OnCompleted(continuation, state, token, flags);

    /// <summary>Ends a wait when <paramref name="cancellationToken"/> is cancelled: registered once per token, not per
    /// wait. The writer resumes from the thread pool, not inside whatever cancels the token.</summary>
    private void ObserveCancellation(CancellationToken cancellationToken)
    {
        if (!cancellationToken.CanBeCanceled || cancellationToken == _cancelledBy)
        {
            return;
        }

        _cancellation.Dispose();
        _cancelledBy = cancellationToken;
        _cancellation = cancellationToken.UnsafeRegister(static (s, token) =>
        {
            var stream = (MapStream)s!;
            if (!stream.StopWaiting())
            {
                return; // not waiting: the writer sees the cancellation before it waits again
            }

            ThreadPool.UnsafeQueueUserWorkItem(static state => state.Stream._wait.SetException(new OperationCanceledException(state.Token)),
                (Stream: stream, Token: token), preferLocal: false);
        }, this);
    }

    private Taken Take(out MapMessage? message, out short version)
    {
        message = null;
        version = 0;
        lock (_gate)
        {
            if (_resetPending)
            {
                // It fell behind: drop what is queued and start over from the current map.
                _resetPending = false;
                _queue.Clear();
                _lastSentAt = Environment.TickCount64;
                return Taken.Reset;
            }

            if (_queue.TryDequeue(out message))
            {
                _lastSentAt = Environment.TickCount64;
                return Taken.Message;
            }

            if (_closed)
            {
                return Taken.Closed;
            }

            // Its continuation runs where the wake runs (see the class summary), not queued on its own.
            _wait.Reset();
            _waiting = true;
            version = _wait.Version;
            return Taken.Nothing;
        }
    }

    /// <summary>Queues <paramref name="message"/> (or marks the stream for a reset when full); true when the writer must
    /// be woken for it (under the lock).</summary>
    private bool EnqueueLocked(MapMessage message)
    {
        if (_closed)
        {
            return false;
        }

        if (_queue.Count < capacity)
        {
            _queue.Enqueue(message);
        }
        else
        {
            _resetPending = true;
        }

        return RequestWake();
    }

    /// <summary>Whether the writer waits and no wake is on its way yet (under the lock).</summary>
    private bool RequestWake()
    {
        if (!_waiting || _wakeRequested)
        {
            return false;
        }

        _wakeRequested = true;
        return true;
    }

    private enum Taken
    {
        Nothing,
        Message,
        Reset,
        Closed,
    }
}

/// <summary>
/// Where stream wakes run. Outside a <see cref="Defer"/> scope a wake runs at once, on the caller's thread. Within one
/// (a feed routing a batch under its lock, where no writer may run) wakes are collected and, when the scope ends,
/// handed to the gateway's <see cref="FanoutThreads"/>.
/// </summary>
internal static class StreamWakes
{
    /// <summary>The wakes of the open scope on this thread; null outside one.</summary>
    [ThreadStatic]
    private static List<MapStream>? t_deferred;

    /// <summary>The list of this thread's last scope, kept for its next: a batch for 10,000 streams would otherwise
    /// grow a new one from empty every time.</summary>
    [ThreadStatic]
    private static List<MapStream>? t_spare;

    public static Scope Defer(FanoutThreads fanout)
    {
        if (t_deferred is not null)
        {
            return default; // nested: the outer scope hands them over
        }

        t_deferred = t_spare ?? [];
        t_spare = null;
        return new Scope(t_deferred, fanout);
    }

    public static void Wake(MapStream stream)
    {
        if (t_deferred is { } deferred)
        {
            deferred.Add(stream);
        }
        else
        {
            stream.Wake();
        }
    }

    public readonly struct Scope(List<MapStream>? streams, FanoutThreads? fanout) : IDisposable
    {
        public void Dispose()
        {
            if (streams is null)
            {
                return;
            }

            t_deferred = null;
            try
            {
                if (streams.Count > 0)
                {
                    fanout!.Wake(streams);
                }
            }
            finally
            {
                streams.Clear();
                t_spare = streams;
            }
        }
    }
}
