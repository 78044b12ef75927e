using EphemeralOrleans.Protocol.V1;

namespace EphemeralOrleans.Agent.Control;

/// <summary>The agent API of one gateway, over gRPC or HTTP; messages are the <c>ephemeral.v1</c> types either way.</summary>
public interface IControlClient : IDisposable
{
    /// <exception cref="AgentFailure">Refused, or the gateway could not be reached.</exception>
    Task<RegisterResponse> RegisterAsync(RegisterRequest request, CancellationToken cancellationToken);

    /// <summary>The netmap stream until the server ends it (the node is gone) or it fails (<see cref="AgentFailure"/>).</summary>
    IAsyncEnumerable<MapResponse> MapAsync(string nodeToken, CancellationToken cancellationToken);

    /// <summary>Replaces the UDP endpoints the node's WireGuard listens on; returns the node as it is now.</summary>
    Task<Node> SetEndpointsAsync(string nodeToken, IEnumerable<string> endpoints, CancellationToken cancellationToken);

    /// <summary>Logs the node out; <c>agentExit</c>: because the agent exits (in-memory state), not because it was asked to.</summary>
    Task LogoutAsync(string nodeToken, bool agentExit, CancellationToken cancellationToken);
}
