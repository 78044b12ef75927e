using System.Diagnostics;
using EphemeralOrleans.Protocol.V1;
using Grpc.Core;

namespace EphemeralOrleans.Tests.Infrastructure;

/// <summary>
/// An agent's map stream as a reconnecting agent holds it: reopened with the same token whenever it breaks, until
/// the gateway says the token is no longer valid (the node is gone) or the stream is disposed.
/// </summary>
public sealed class HeldStream : IAsyncDisposable
{
    private static readonly Stopwatch Clock = Stopwatch.StartNew();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private long _lastMessageTicks;
    private long _longestGapTicks;

    private HeldStream(ControlService.ControlServiceClient control, string nodeId, string token)
    {
        NodeId = nodeId;
        _loop = Task.Run(() => HoldAsync(control, token));
    }

    public string NodeId { get; }

    /// <summary>Full maps received whose self is this node.</summary>
    public int FullMaps { get; private set; }

    /// <summary>Times the stream broke and was opened again.</summary>
    public int Reconnects { get; private set; }

    /// <summary>Why the stream is over for good (token refused, or ended by the server), or null while held.</summary>
    public string? Gone { get; private set; }

    /// <summary>Since the last message of any kind (keepalives included).</summary>
    public TimeSpan Silence => Clock.Elapsed - TimeSpan.FromTicks(Interlocked.Read(ref _lastMessageTicks));

    /// <summary>The longest silence since <see cref="ResetLongestSilence"/>, the current one included.</summary>
    public TimeSpan LongestSilence => Silence > TimeSpan.FromTicks(Interlocked.Read(ref _longestGapTicks)) ? Silence : TimeSpan.FromTicks(Interlocked.Read(ref _longestGapTicks));

    public void ResetLongestSilence() => Interlocked.Exchange(ref _longestGapTicks, 0);

    /// <summary>Holds the stream over gRPC (raw messages: a test process holding hundreds of streams must stay light).</summary>
    public static HeldStream Start(ControlService.ControlServiceClient control, string nodeId, string token) => new(control, nodeId, token);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop;
        _stop.Dispose();
    }

    private async Task HoldAsync(ControlService.ControlServiceClient control, string token)
    {
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                using var call = control.Map(new MapRequest(), GrpcClient.Bearer(token), cancellationToken: _stop.Token);
                while (true)
                {
                    using var silence = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                    silence.CancelAfter(TimeSpan.FromSeconds(60)); // the agent reconnects a stream silent for 90 s by default
                    if (!await call.ResponseStream.MoveNext(silence.Token))
                    {
                        Gone = "the server ended the stream";
                        return;
                    }

                    var now = Clock.Elapsed.Ticks;
                    var gap = now - Interlocked.Exchange(ref _lastMessageTicks, now);
                    if (gap > Interlocked.Read(ref _longestGapTicks))
                    {
                        Interlocked.Exchange(ref _longestGapTicks, gap);
                    }
                    var message = call.ResponseStream.Current;
                    if (message.MessageCase == MapResponse.MessageOneofCase.Full && message.Full.Self.Id == NodeId)
                    {
                        FullMaps++;
                    }
                }
            }
            catch (Exception exception) when (!_stop.IsCancellationRequested)
            {
                if (exception is RpcException { StatusCode: StatusCode.Unauthenticated })
                {
                    Gone = "token refused";
                    return;
                }

                Reconnects++;
                try
                {
                    await Task.Delay(250, _stop.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
            catch (Exception)
            {
                return;
            }
        }
    }
}
