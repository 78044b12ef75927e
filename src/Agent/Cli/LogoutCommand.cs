using EphemeralOrleans.Agent.Control;
using EphemeralOrleans.Agent.State;

namespace EphemeralOrleans.Agent.Cli;

/// <summary>
/// <c>logout</c>: asks the agent up on the socket to log out and exits with what happened (0 only when the node is
/// logged out). With <c>--state FILE</c> it is about that file's node only: a missing file is an error, and the agent
/// on the socket is asked only if it runs that node; otherwise the file's token logs the node out directly.
/// </summary>
public sealed class LogoutCommand(string socket, string? stateFile, AgentOutput output)
{
    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            if (stateFile is null)
            {
                return await AskAgentAsync(cancellationToken)
                    ?? Fail(new AgentFailure("not_running", $"No agent is up on {socket}, and no --state file was given to log out from.", transient: false));
            }

            var saved = AgentState.Load(stateFile);
            if (saved is null)
            {
                output.Error("state_missing", $"{stateFile} does not exist: there is no saved node to log out.");
                return ExitCodes.Usage;
            }

            if (await LocalApi.TryAskAsync(socket, "status", cancellationToken) is { } status
                && status.TryGetProperty("node", out var node) && node.GetProperty("id").GetString() == saved.NodeId)
            {
                return await AskAgentAsync(cancellationToken) ?? ExitCodes.NotRunning;
            }

            using var client = new HttpControlClient(new Uri(saved.LoginServer), GatewayTrust.Load(saved.CaFile));
            await client.LogoutAsync(saved.NodeToken, agentExit: false, cancellationToken);
            AgentState.Delete(stateFile);
            output.Event("logged_out", new { node = saved.NodeId }, $"logged out: {saved.NodeId}");
            return ExitCodes.Ok;
        }
        catch (AgentFailure failure)
        {
            if (failure.Code == "invalid_token" && stateFile is not null)
            {
                // Its node is gone or its token was replaced: the file can no longer do anything.
                AgentState.Delete(stateFile);
            }

            return Fail(failure);
        }
        catch (InvalidDataException exception)
        {
            output.Error("state_invalid", exception.Message);
            return ExitCodes.Usage;
        }
    }

    /// <summary>The agent's answer as an exit code; null when no agent is up.</summary>
    private async Task<int?> AskAgentAsync(CancellationToken cancellationToken)
    {
        if (await LocalApi.TryAskAsync(socket, "logout", cancellationToken) is not { } answer)
        {
            return null;
        }

        if (answer.TryGetProperty("loggedOut", out var nodeId))
        {
            output.Event("logged_out", new { node = nodeId.GetString() }, $"logged out: {nodeId.GetString()}");
            return ExitCodes.Ok;
        }

        var code = answer.TryGetProperty("code", out var c) ? c.GetString() ?? "logout_failed" : "logout_failed";
        return Fail(new AgentFailure(code, answer.TryGetProperty("error", out var e) ? e.GetString() ?? code : code, transient: false));
    }

    private int Fail(AgentFailure failure)
    {
        output.Error(failure.Code, failure.Message);
        return failure.ExitCode;
    }
}
