using EphemeralOrleans.Testing;

namespace EphemeralOrleans.Tests.Infrastructure;

/// <summary>A fact that needs something of the machine: skipped with the reason when it is missing, except in CI
/// (CI=true), where it runs and fails.</summary>
public abstract class MachineFactAttribute : FactAttribute
{
    protected MachineFactAttribute(string? unavailableReason)
    {
        if (unavailableReason is not null && !string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
        {
            Skip = unavailableReason;
        }
    }
}

/// <summary>A fact that needs PostgreSQL binaries.</summary>
public sealed class PostgresFactAttribute() : MachineFactAttribute(PostgresServer.UnavailableReason());

/// <summary>A fact that needs network namespaces (root, iproute2).</summary>
public sealed class NetworkFactAttribute() : MachineFactAttribute(NetworkLab.UnavailableReason());
