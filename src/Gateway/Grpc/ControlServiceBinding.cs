using EphemeralOrleans.Gateway.Map;
using EphemeralOrleans.Protocol.V1;
using Google.Protobuf;
using Grpc.AspNetCore.Server.Model;
using Grpc.Core;

namespace EphemeralOrleans.Gateway.Grpc;

/// <summary>
/// Binds <see cref="ControlGrpcService"/> to the <c>ephemeral.v1.ControlService</c> contract in place of the generated
/// binding, for one reason: <c>Map</c> writes each netmap message's <c>MapResponse</c> encoding made once
/// (<see cref="ProtoMapping.ToProtoBytes"/>) instead of serializing it again for every stream that gets it. Streams of
/// one policy class share their deltas; at 10,000 streams that serializing was about a third of the gateway's fan-out work.
/// The other methods use the generated messages as usual; the wire format is the contract's.
/// </summary>
public sealed class ControlServiceBinding : IServiceMethodProvider<ControlGrpcService>
{
    /// <summary>Read by gRPC reflection, which looks for it on the type declaring a service's base class.</summary>
    public static Google.Protobuf.Reflection.ServiceDescriptor Descriptor => ControlService.Descriptor;

    /// <summary>The base of <see cref="ControlGrpcService"/>, so that gRPC reflection finds its contract.</summary>
    public abstract class ServiceBase;

    private static readonly string ServiceName = ControlService.Descriptor.FullName;

    private static readonly Marshaller<MapMessage> MapMessageMarshaller = Marshallers.Create<MapMessage>(
        (message, context) => context.Complete(message.ToProtoBytes()),
        _ => throw new NotSupportedException("The gateway sends map messages; it does not read them."));

    public void OnServiceMethodDiscovery(ServiceMethodProviderContext<ControlGrpcService> context)
    {
        context.AddUnaryMethod(Unary("Register", RegisterRequest.Parser, RegisterResponse.Parser), [],
            (service, request, call) => service.Register(request, call));
        context.AddServerStreamingMethod(
            new Method<MapRequest, MapMessage>(MethodType.ServerStreaming, ServiceName, "Map", MessageMarshaller(MapRequest.Parser), MapMessageMarshaller), [],
            (service, request, writer, call) => service.Map(request, writer, call));
        context.AddUnaryMethod(Unary("SetEndpoints", SetEndpointsRequest.Parser, SetEndpointsResponse.Parser), [],
            (service, request, call) => service.SetEndpoints(request, call));
        context.AddUnaryMethod(Unary("Logout", LogoutRequest.Parser, LogoutResponse.Parser), [],
            (service, request, call) => service.Logout(request, call));
        context.AddUnaryMethod(Unary("Endpoints", EndpointsRequest.Parser, EndpointsResponse.Parser), [],
            (service, request, call) => service.Endpoints(request, call));
    }

    private static Method<TRequest, TResponse> Unary<TRequest, TResponse>(string name, MessageParser<TRequest> request, MessageParser<TResponse> response)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse> =>
        new(MethodType.Unary, ServiceName, name, MessageMarshaller(request), MessageMarshaller(response));

    /// <summary>A generated message's marshaller, for methods bound by hand (here, and the bench's raw server).</summary>
    public static Marshaller<T> MessageMarshaller<T>(MessageParser<T> parser) where T : class, IMessage<T> => Marshallers.Create<T>(
        (message, context) =>
        {
            context.SetPayloadLength(message.CalculateSize());
            message.WriteTo(context.GetBufferWriter());
            context.Complete();
        },
        context => parser.ParseFrom(context.PayloadAsReadOnlySequence()));
}
