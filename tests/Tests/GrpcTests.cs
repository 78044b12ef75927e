using System.Net.Http.Json;
using System.Text.Json;
using EphemeralOrleans.Protocol.V1;
using EphemeralOrleans.Tests.Infrastructure;
using Google.Rpc;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;
using Grpc.Reflection.V1Alpha;
using Microsoft.Extensions.Configuration;

namespace EphemeralOrleans.Tests;

/// <summary>What only the gRPC endpoint has: admin credentials in metadata, message size limits, reflection and health.</summary>
public sealed class GrpcTests : GatewayTest
{
    private GrpcChannel Channel => GrpcChannel.ForAddress(Gateway.Service<IConfiguration>()["Kestrel:Endpoints:Grpc:Url"]!);

    [Fact]
    public async Task Admin_calls_without_the_admin_key_are_unauthenticated_and_change_nothing()
    {
        using var channel = Channel;
        var admin = new AdminService.AdminServiceClient(channel);
        foreach (var headers in new[] { new Metadata(), GrpcClient.Bearer(ApiClient.AdminKey + "x"), GrpcClient.Bearer("") })
        {
            var refused = await Assert.ThrowsAsync<RpcException>(() =>
                admin.CreateKeyAsync(new CreateKeyRequest { Tailnet = "locked", Reusable = true }, headers).ResponseAsync);
            Assert.Equal(StatusCode.Unauthenticated, refused.StatusCode);
            Assert.Equal("admin_key_required", refused.GetRpcStatus()?.GetDetail<ErrorInfo>()?.Reason);
        }

        Assert.Empty(await Gateway.ListKeysAsync("locked"));
    }

    [Fact]
    public async Task An_oversized_registration_is_refused_before_it_reaches_a_grain()
    {
        using var channel = Channel;
        var control = new ControlService.ControlServiceClient(channel);
        var key = (await Gateway.CreateKeyAsync(reusable: false, tailnet: "huge")).Str("key");
        var refused = await Assert.ThrowsAsync<RpcException>(() => control.RegisterAsync(new RegisterRequest
        {
            AuthKey = key, NodeKey = ApiClient.NewNodeKey(), Hostname = new string('h', 200_000),
        }).ResponseAsync);
        Assert.Equal(StatusCode.ResourceExhausted, refused.StatusCode);
        Assert.Equal(0, (await Gateway.ListKeysAsync("huge")).Single().GetProperty("uses").GetInt32());
    }

    [Fact]
    public async Task Reflection_lists_both_services_and_health_reports_serving()
    {
        using var channel = Channel;
        var health = await new Health.HealthClient(channel).CheckAsync(new HealthCheckRequest());
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, health.Status);

        using var call = new ServerReflection.ServerReflectionClient(channel).ServerReflectionInfo();
        await call.RequestStream.WriteAsync(new ServerReflectionRequest { ListServices = "" });
        await call.RequestStream.CompleteAsync();
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        var services = call.ResponseStream.Current.ListServicesResponse.Service.Select(s => s.Name).ToArray();
        Assert.Contains("ephemeral.v1.ControlService", services);
        Assert.Contains("ephemeral.v1.AdminService", services);
        Assert.Contains("grpc.health.v1.Health", services);
    }

    [Fact]
    public async Task Endpoints_names_the_grpc_url_over_both_transports()
    {
        using var channel = Channel;
        var grpc = await new ControlService.ControlServiceClient(channel).EndpointsAsync(new EndpointsRequest());
        var http = await Gateway.Http.GetFromJsonAsync<JsonElement>("/api/v1/machine/endpoints");
        Assert.Equal(Gateway.Service<IConfiguration>()["Kestrel:Endpoints:Grpc:Url"], grpc.Grpc);
        Assert.Equal(grpc.Grpc, http.Str("grpc"));
    }
}
