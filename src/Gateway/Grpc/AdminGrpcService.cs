using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Gateway.Application;
using CreateKeyRequest = EphemeralOrleans.Protocol.V1.CreateKeyRequest;
using TrustPolicy = EphemeralOrleans.Protocol.V1.TrustPolicy;
using AuditEvent = EphemeralOrleans.Protocol.V1.AuditEvent;
using EphemeralOrleans.Protocol.V1;
using Grpc.Core;

namespace EphemeralOrleans.Gateway.Grpc;

/// <summary>The admin API over gRPC: each call checks the admin key, then does what its HTTP twin does.</summary>
public sealed class AdminGrpcService(ControlPlane controlPlane, AdminGuard guard) : AdminService.AdminServiceBase
{
    public override async Task<CreateKeyResponse> CreateKey(CreateKeyRequest request, ServerCallContext context)
    {
        var tailnet = Authorize(context, request.Tailnet);
        var created = await controlPlane.CreateKeyAsync(tailnet, new Application.CreateKeyRequest(request.Reusable, request.Ephemeral,
            request.Preauthorized, [.. request.Tags], request.HasExpirySeconds ? request.ExpirySeconds : null,
            string.IsNullOrEmpty(request.Description) ? null : request.Description));
        return new CreateKeyResponse { AuthKey = created.Info.ToProto(), Key = created.Key };
    }

    public override async Task<ListKeysResponse> ListKeys(ListKeysRequest request, ServerCallContext context)
    {
        var keys = await controlPlane.ListKeysAsync(Authorize(context, request.Tailnet));
        return new ListKeysResponse { Keys = { keys.Select(k => k.ToProto()) } };
    }

    public override async Task<AuthKey> GetKey(GetKeyRequest request, ServerCallContext context) =>
        (await controlPlane.GetKeyAsync(Authorize(context, request.Tailnet), request.Id)).ToProto();

    public override async Task<RevokeKeyResponse> RevokeKey(RevokeKeyRequest request, ServerCallContext context)
    {
        await controlPlane.RevokeKeyAsync(Authorize(context, request.Tailnet), request.Id);
        return new RevokeKeyResponse();
    }

    public override async Task<ListNodesResponse> ListNodes(ListNodesRequest request, ServerCallContext context)
    {
        var nodes = await controlPlane.ListNodesAsync(Authorize(context, request.Tailnet));
        return new ListNodesResponse { Nodes = { nodes.Select(n => n.ToAdminProto()) } };
    }

    public override async Task<Node> GetNode(GetNodeRequest request, ServerCallContext context) =>
        (await controlPlane.GetNodeAsync(Authorize(context, request.Tailnet), request.Id)).ToAdminProto();

    public override async Task<DeleteNodeResponse> DeleteNode(DeleteNodeRequest request, ServerCallContext context)
    {
        await controlPlane.DeleteNodeAsync(Authorize(context, request.Tailnet), request.Id);
        return new DeleteNodeResponse();
    }

    public override async Task<Node> ApproveNode(ApproveNodeRequest request, ServerCallContext context) =>
        (await controlPlane.ApproveNodeAsync(Authorize(context, request.Tailnet), request.Id)).ToAdminProto();

    public override async Task<ExpireNodeResponse> ExpireNode(ExpireNodeRequest request, ServerCallContext context)
    {
        await controlPlane.ExpireNodeAsync(Authorize(context, request.Tailnet), request.Id);
        return new ExpireNodeResponse();
    }

    public override async Task<Node> RenameNode(RenameNodeRequest request, ServerCallContext context) =>
        (await controlPlane.RenameNodeAsync(Authorize(context, request.Tailnet), request.Id, request.Name)).ToAdminProto();

    public override async Task<Policy> GetPolicy(GetPolicyRequest request, ServerCallContext context) =>
        new() { PolicyJson = await controlPlane.GetPolicyAsync(Authorize(context, request.Tailnet)) };

    public override async Task<Policy> SetPolicy(SetPolicyRequest request, ServerCallContext context) =>
        new() { PolicyJson = await controlPlane.SetPolicyAsync(Authorize(context, request.Tailnet), request.PolicyJson) };

    public override async Task<Settings> GetSettings(GetSettingsRequest request, ServerCallContext context) =>
        new() { DeviceApproval = (await controlPlane.GetSettingsAsync(Authorize(context, request.Tailnet))).DeviceApproval };

    public override async Task<Settings> UpdateSettings(UpdateSettingsRequest request, ServerCallContext context)
    {
        var tailnet = Authorize(context, request.Tailnet);
        var settings = await controlPlane.UpdateSettingsAsync(tailnet, request.HasDeviceApproval ? request.DeviceApproval : null);
        return new Settings { DeviceApproval = settings.DeviceApproval };
    }

    public override async Task<ListEventsResponse> ListEvents(ListEventsRequest request, ServerCallContext context)
    {
        var tailnet = Authorize(context, request.Tailnet);
        var (events, next) = await controlPlane.ListEventsAsync(tailnet, request.Since, request.Type, request.Node, request.Limit == 0 ? null : request.Limit);
        return new ListEventsResponse
        {
            Events =
            {
                events.Select(e => new AuditEvent
                {
                    Id = e.Id, Time = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(e.Time), Type = e.Type,
                    Actor = e.Actor, Target = e.Target, Node = e.NodeId ?? "", DataJson = e.Data,
                }),
            },
            Next = next.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
    }

    /// <summary>Checks the admin key, then the tailnet name (in that order, as over HTTP).</summary>
    private string Authorize(ServerCallContext context, string tailnet)
    {
        if (guard.Refusal(GrpcCredentials.Bearer(context), context.GetHttpContext().Connection.RemoteIpAddress, "admin_grpc") is { } refusal)
        {
            throw GrpcErrors.From(refusal);
        }

        var name = ControlPlane.Tailnet(tailnet);
        // The audit log's actor for every grain call this method makes (set in a synchronous method: it stays set).
        Orleans.Runtime.RequestContext.Set(EventActors.ContextKey, EventActors.AdminApi);
        return name;
    }

    public override async Task<TrustPolicy> CreateTrustPolicy(PutTrustPolicyRequest request, ServerCallContext context) =>
        (await controlPlane.PutTrustPolicyAsync(Authorize(context, request.Tailnet), null, TrustPolicyRequest(request))).ToProto();

    public override async Task<ListTrustPoliciesResponse> ListTrustPolicies(ListTrustPoliciesRequest request, ServerCallContext context)
    {
        var policies = await controlPlane.ListTrustPoliciesAsync(Authorize(context, request.Tailnet));
        return new ListTrustPoliciesResponse { TrustPolicies = { policies.Select(p => p.ToProto()) } };
    }

    public override async Task<TrustPolicy> GetTrustPolicy(GetTrustPolicyRequest request, ServerCallContext context) =>
        (await controlPlane.GetTrustPolicyAsync(Authorize(context, request.Tailnet), request.Id)).ToProto();

    public override async Task<TrustPolicy> UpdateTrustPolicy(PutTrustPolicyRequest request, ServerCallContext context) =>
        (await controlPlane.PutTrustPolicyAsync(Authorize(context, request.Tailnet), request.Id, TrustPolicyRequest(request))).ToProto();

    public override async Task<DeleteTrustPolicyResponse> DeleteTrustPolicy(DeleteTrustPolicyRequest request, ServerCallContext context)
    {
        await controlPlane.DeleteTrustPolicyAsync(Authorize(context, request.Tailnet), request.Id);
        return new DeleteTrustPolicyResponse();
    }

    private static Application.TrustPolicyRequest TrustPolicyRequest(PutTrustPolicyRequest request) => new(
        request.Issuer, [.. request.Audiences], request.Subject, new Dictionary<string, string>(request.Claims), [.. request.Tags], request.NeedsApproval,
        string.IsNullOrEmpty(request.Description) ? null : request.Description);
}
