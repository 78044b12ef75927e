namespace EphemeralOrleans.Agent.Control;

/// <summary>Exit codes a script can act on. Stable: documented in the README.</summary>
public static class ExitCodes
{
    public const int Ok = 0;
    public const int Error = 1;
    public const int Usage = 2;
    public const int InvalidKey = 10;
    public const int KeyExpired = 11;
    public const int KeyRevoked = 12;
    public const int KeyUsed = 13;
    public const int GatewayUnreachable = 14;
    public const int Refused = 15;
    public const int NodeGone = 16;
    public const int NotRunning = 17;
    public const int Unauthorized = 18;
}

/// <summary>What went wrong talking to the gateway, in the same terms over both transports: the API's problem code
/// (<c>key_used</c>, <c>invalid_token</c>, …, or <c>unreachable</c>), and whether it is worth retrying.</summary>
public sealed class AgentFailure(string code, string message, bool transient) : Exception(message)
{
    public string Code { get; } = code;

    public bool Transient { get; } = transient;

    public static AgentFailure Unreachable(string message) => new("unreachable", message, transient: true);

    /// <summary>The exit code for a refusal at registration or at an admin call.</summary>
    public int ExitCode => Code switch
    {
        "invalid_key" => ExitCodes.InvalidKey,
        "key_expired" => ExitCodes.KeyExpired,
        "key_revoked" => ExitCodes.KeyRevoked,
        "key_used" => ExitCodes.KeyUsed,
        "unreachable" or "unavailable" => ExitCodes.GatewayUnreachable,
        "invalid_token" => ExitCodes.NodeGone,
        "admin_key_required" => ExitCodes.Unauthorized,
        _ => ExitCodes.Refused,
    };
}
