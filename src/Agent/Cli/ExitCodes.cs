namespace EphemeralOrleans.Agent.Cli;

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
    public const int AlreadyRunning = 19;
    public const int Dataplane = 20;
    public const int NotFound = 21;
}
