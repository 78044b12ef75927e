using EphemeralOrleans.Testing;

namespace EphemeralOrleans.Tests.Infrastructure;

/// <summary>A test class with its own throwaway PostgreSQL (when the binaries exist; its facts are <see cref="PostgresFactAttribute"/>s).</summary>
public abstract class PostgresTest : IAsyncLifetime
{
    private PostgresServer? _postgres;

    /// <summary>This class's server (only within <see cref="PostgresFactAttribute"/> tests).</summary>
    protected PostgresServer Postgres => _postgres ?? throw new InvalidOperationException(PostgresServer.UnavailableReason());

    /// <summary>A fresh, empty database on this class's server.</summary>
    protected Task<string> NewDatabaseAsync(string prefix) =>
        (_postgres ?? throw new InvalidOperationException(PostgresServer.UnavailableReason())).CreateDatabaseAsync(prefix + Guid.NewGuid().ToString("N")[..8]);

    public async Task InitializeAsync()
    {
        if (PostgresServer.UnavailableReason() is null)
        {
            _postgres = await PostgresServer.StartAsync();
        }
    }

    public async Task DisposeAsync()
    {
        if (_postgres is not null)
        {
            await _postgres.DisposeAsync();
        }
    }
}
