using System.Collections.Concurrent;
using System.Threading.Channels;
using EphemeralOrleans.Gateway.Grpc;
using EphemeralOrleans.Protocol.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.AspNetCore.Server.Model;
using Grpc.Core;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace EphemeralOrleans.FanoutBench;

/// <summary>
/// The raw limit: a bare gRPC server (the same <c>ControlService.Map</c> contract, nothing behind it) that broadcasts
/// one delta of the same shape to every open stream at a fixed rate, encoded once and written to every stream as is (the
/// least a server can do per stream). <c>Logout</c> starts the broadcast; the message's <c>version</c> carries its send
/// time in microseconds.
/// </summary>
public static class RawServer
{
    public static async Task RunAsync(int port)
    {
        var builder = WebApplication.CreateBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.ListenLocalhost(port, o => o.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc();
        builder.Services.AddSingleton<Broadcaster>();
        builder.Services.AddSingleton<IServiceMethodProvider<RawControl>, RawControlBinding>();
        var app = builder.Build();
        app.MapGrpcService<RawControl>();
        await app.RunAsync();
    }

    public sealed class Broadcaster
    {
        private readonly ConcurrentDictionary<Channel<byte[]>, bool> _subscribers = new();
        private int _started;

        public Channel<byte[]> Subscribe()
        {
            var channel = System.Threading.Channels.Channel.CreateBounded<byte[]>(new BoundedChannelOptions(1024) { SingleReader = true });
            _subscribers[channel] = true;
            return channel;
        }

        public void Unsubscribe(Channel<byte[]> channel) => _subscribers.TryRemove(channel, out _);

        public void Start(int batchesPerSecond, int changesPerBatch)
        {
            if (Interlocked.Exchange(ref _started, 1) == 1)
            {
                return;
            }

            _ = Task.Run(async () =>
            {
                using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1.0 / batchesPerSecond));
                var n = 0;
                while (await timer.WaitForNextTickAsync())
                {
                    var delta = new MapDelta { Version = (long)(Bench.NowMs() * 1000) };
                    // Joins and leaves alternate, as in the churn: 10 changes are 5 changed peers and 5 removed.
                    for (var i = 0; i < changesPerBatch; i++)
                    {
                        if (i % 2 == 0)
                        {
                            delta.PeersChanged.Add(SampleNode(n++));
                        }
                        else
                        {
                            delta.PeersRemoved.Add($"removed-{n}");
                        }
                    }

                    var message = new MapResponse { Delta = delta }.ToByteArray();
                    foreach (var subscriber in _subscribers.Keys)
                    {
                        subscriber.Writer.TryWrite(message);
                    }
                }
            });
        }

        private static Node SampleNode(int n) => new()
        {
            Id = $"raw{n:D12}-abcdefgh",
            Name = $"job-{n}",
            Hostname = $"job-{n}",
            NodeKey = "nodekey:" + new string('a', 64),
            Ipv4 = "100.64.1.2",
            Ipv6 = "fd7a:115c:a1e0::6440:102",
            Ephemeral = true,
            Created = Timestamp.FromDateTime(DateTime.UtcNow),
            Authorized = true,
            KeyId = "benchkey0001",
            Tailnet = "bench",
        };
    }

    public sealed class RawControl(Broadcaster broadcaster)
    {
        public async Task Map(MapRequest request, IServerStreamWriter<byte[]> responseStream, ServerCallContext context)
        {
            var channel = broadcaster.Subscribe();
            try
            {
                await foreach (var message in channel.Reader.ReadAllAsync(context.CancellationToken))
                {
                    await responseStream.WriteAsync(message);
                }
            }
            catch (OperationCanceledException)
            {
            }
            finally
            {
                broadcaster.Unsubscribe(channel);
            }
        }

        public Task<EndpointsResponse> Endpoints(EndpointsRequest request, ServerCallContext context) => Task.FromResult(new EndpointsResponse());

        public Task<LogoutResponse> Logout(LogoutRequest request, ServerCallContext context)
        {
            var rate = context.RequestHeaders.GetValue("rate")!.Split(',').Select(int.Parse).ToArray();
            broadcaster.Start(rate[0], rate[1]);
            return Task.FromResult(new LogoutResponse());
        }
    }

    /// <summary><c>ControlService</c>'s <c>Map</c> with already encoded responses, and the two calls the bench makes.</summary>
    public sealed class RawControlBinding : IServiceMethodProvider<RawControl>
    {
        private static readonly string Service = ControlService.Descriptor.FullName;

        public void OnServiceMethodDiscovery(ServiceMethodProviderContext<RawControl> context)
        {
            var encoded = Marshallers.Create<byte[]>(bytes => bytes, bytes => bytes);
            context.AddServerStreamingMethod(new Method<MapRequest, byte[]>(MethodType.ServerStreaming, Service, "Map", ControlServiceBinding.MessageMarshaller(MapRequest.Parser), encoded), [],
                (service, request, writer, call) => service.Map(request, writer, call));
            context.AddUnaryMethod(new Method<EndpointsRequest, EndpointsResponse>(MethodType.Unary, Service, "Endpoints", ControlServiceBinding.MessageMarshaller(EndpointsRequest.Parser), ControlServiceBinding.MessageMarshaller(EndpointsResponse.Parser)), [],
                (service, request, call) => service.Endpoints(request, call));
            context.AddUnaryMethod(new Method<LogoutRequest, LogoutResponse>(MethodType.Unary, Service, "Logout", ControlServiceBinding.MessageMarshaller(LogoutRequest.Parser), ControlServiceBinding.MessageMarshaller(LogoutResponse.Parser)), [],
                (service, request, call) => service.Logout(request, call));
        }
    }
}
