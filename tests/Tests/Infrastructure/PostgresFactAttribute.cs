using EphemeralOrleans.Testing;

namespace EphemeralOrleans.Tests.Infrastructure;

/// <summary>A fact that needs PostgreSQL binaries: skipped with the reason when they are missing, except in CI (CI=true), where it runs and fails.</summary>
public sealed class PostgresFactAttribute : FactAttribute
{
    public PostgresFactAttribute()
    {
        if (PostgresServer.UnavailableReason() is { } reason && !string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
        {
            Skip = reason;
        }
    }
}
