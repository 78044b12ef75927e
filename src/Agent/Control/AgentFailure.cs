using EphemeralOrleans.Agent.Cli;

namespace EphemeralOrleans.Agent.Control;

/// <summary>What went wrong talking to the gateway, in the same terms over both transports: the API's problem code
/// (<c>key_used</c>, <c>invalid_token</c>, …, or <c>unreachable</c>), and whether it is worth retrying.</summary>
public sealed class AgentFailure(string code, string message, bool transient) : Exception(message)
{
    public string Code { get; } = code;

    public bool Transient { get; } = transient;

    public static AgentFailure Unreachable(string message) => new("unreachable", message, transient: true);

    /// <summary>A connection to the gateway that failed: retried, unless its TLS handshake failed (code <c>tls_failed</c>).</summary>
    public static AgentFailure Connecting(Exception exception) => Connectivity.IsTlsFailure(exception)
        ? new("tls_failed", $"The gateway could not be reached: {Connectivity.Describe(exception)}", transient: false)
        : Unreachable($"The gateway could not be reached: {Connectivity.Describe(exception)}");

    /// <summary>The message in the CLI's terms: an input the gateway refused is named by its flag, not its API field.</summary>
    public string FlagMessage => Code switch
    {
        "invalid_hostname" => "--hostname: " + Message,
        "invalid_tag" => "--tags: " + Message,
        "invalid_expiry" => "--expiry: " + Message.Replace("expirySeconds", "the lifetime", StringComparison.Ordinal),
        "invalid_description" => "--description: " + Message,
        "invalid_tailnet" => "--tailnet: " + Message,
        "invalid_cursor" => "--since: " + Message,
        "unknown_event_type" => "--type: " + Message,
        "invalid_node_id" => "--node: " + Message,
        _ => Message,
    };

    /// <summary>The exit code for a refusal at registration or at an admin call.</summary>
    public int ExitCode => Code switch
    {
        "invalid_key" => ExitCodes.InvalidKey,
        "key_expired" => ExitCodes.KeyExpired,
        "key_revoked" => ExitCodes.KeyRevoked,
        "key_used" => ExitCodes.KeyUsed,
        "unreachable" or "unavailable" or "tls_failed" => ExitCodes.GatewayUnreachable,
        "invalid_token" => ExitCodes.NodeGone,
        "admin_key_required" => ExitCodes.Unauthorized,
        "agent_running" => ExitCodes.AlreadyRunning,
        "not_found" or "node_not_found" or "key_not_found" => ExitCodes.NotFound,
        "ambiguous" or "invalid_name" or "auth_key_required" or "not_a_gateway" or "invalid_hostname" or "invalid_tag" or "invalid_expiry" or "invalid_description" or "invalid_tailnet"
            or "invalid_cursor" or "unknown_event_type" or "invalid_node_id" or "invalid_ca_file" => ExitCodes.Usage,
        "not_running" => ExitCodes.NotRunning,
        _ => ExitCodes.Refused,
    };
}
