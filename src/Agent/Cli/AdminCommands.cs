using System.Text.Json;
using EphemeralOrleans.Agent.Control;
using EphemeralOrleans.Protocol.V1;
using Grpc.Core;
using Grpc.Net.Client;

namespace EphemeralOrleans.Agent.Cli;

/// <summary><c>keys …</c> and <c>nodes …</c>: the admin API through <c>AdminService</c>.</summary>
public sealed class AdminCommands(Uri loginServer, string adminKey, string tailnet, bool json)
{

    public Task<int> CreateKeyAsync(bool reusable, bool ephemeral, bool preauthorized, string[] tags, TimeSpan? expiry, string? description) =>
        CallAsync(async (admin, headers, ct) =>
        {
            var request = new CreateKeyRequest
            {
                Tailnet = tailnet, Reusable = reusable, Ephemeral = ephemeral, Preauthorized = preauthorized, Tags = { tags },
                Description = description ?? "",
            };
            if (expiry is { } e)
            {
                request.ExpirySeconds = (long)e.TotalSeconds;
            }

            var created = await admin.CreateKeyAsync(request, headers, cancellationToken: ct);
            Print(new { key = created.Key, authKey = Describe(created.AuthKey) }, created.Key);
        });

    public Task<int> ListKeysAsync() => CallAsync(async (admin, headers, ct) =>
    {
        var keys = (await admin.ListKeysAsync(new ListKeysRequest { Tailnet = tailnet }, headers, cancellationToken: ct)).Keys;
        Print(new { keys = keys.Select(Describe) }, string.Join('\n', keys.Select(k =>
            $"{k.Id,-14} {(k.Reusable ? "reusable" : "single-use"),-10} {(k.Ephemeral ? "ephemeral" : ""),-9} uses={k.Uses,-4} "
            + $"{(k.Revoked ? "revoked" : k.Expires is { } x && x.ToDateTimeOffset() < DateTimeOffset.UtcNow ? "expired" : "valid"),-8} {string.Join(',', k.Tags)}")));
    });

    public Task<int> RevokeKeyAsync(string id) => CallAsync(async (admin, headers, ct) =>
    {
        await admin.RevokeKeyAsync(new RevokeKeyRequest { Tailnet = tailnet, Id = id }, headers, cancellationToken: ct);
        Print(new { revoked = id }, $"revoked {id}");
    });

    public Task<int> ListNodesAsync() => CallAsync(async (admin, headers, ct) =>
    {
        var nodes = (await admin.ListNodesAsync(new ListNodesRequest { Tailnet = tailnet }, headers, cancellationToken: ct)).Nodes;
        Print(new { nodes = nodes.Select(NetmapNode.Describe) }, string.Join('\n', nodes.Select(n =>
            $"{n.Id,-26} {n.Name,-20} {n.Ipv4,-16} {(n.Online ? "online" : "offline"),-8} {(n.Ephemeral ? "ephemeral" : ""),-9} {(n.Authorized ? "" : "needs-approval")}")));
    });

    public Task<int> DeleteNodeAsync(string id) => CallAsync(async (admin, headers, ct) =>
    {
        await admin.DeleteNodeAsync(new DeleteNodeRequest { Tailnet = tailnet, Id = id }, headers, cancellationToken: ct);
        Print(new { deleted = id }, $"deleted {id}");
    });

    public Task<int> ApproveNodeAsync(string id) => CallAsync(async (admin, headers, ct) =>
    {
        var node = await admin.ApproveNodeAsync(new ApproveNodeRequest { Tailnet = tailnet, Id = id }, headers, cancellationToken: ct);
        Print(NetmapNode.Describe(node), $"approved {node.Name} ({node.Id})");
    });

    private static object Describe(AuthKey key) => new
    {
        key.Id,
        key.Tailnet,
        key.Reusable,
        key.Ephemeral,
        key.Preauthorized,
        Tags = key.Tags.ToArray(),
        Created = key.Created?.ToDateTimeOffset(),
        Expires = key.Expires?.ToDateTimeOffset(),
        key.Description,
        key.Revoked,
        key.Uses,
    };

    private void Print(object data, string text) => Console.Out.WriteLine(json ? JsonSerializer.Serialize(data, AgentOutput.Json) : text);

    private async Task<int> CallAsync(Func<AdminService.AdminServiceClient, Metadata, CancellationToken, Task> call)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            var grpcUrl = await HttpControlClient.GrpcEndpointAsync(loginServer, timeout.Token);
            using var channel = GrpcChannel.ForAddress(grpcUrl);
            await call(new AdminService.AdminServiceClient(channel), new Metadata { { "authorization", "Bearer " + adminKey } }, timeout.Token);
            return ExitCodes.Ok;
        }
        catch (Exception exception) when (exception is RpcException or AgentFailure)
        {
            var failure = exception as AgentFailure ?? GrpcControlClient.Translate((RpcException)exception);
            Console.Error.WriteLine($"error: {failure.FlagMessage} ({failure.Code})");
            return failure.ExitCode;
        }
    }
}
