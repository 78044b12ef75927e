namespace EphemeralOrleans.Tests.Infrastructure;

/// <summary>A test class with its own in-process gateway (short timings), started before its tests and stopped after.</summary>
public abstract class GatewayTest : IAsyncLifetime
{
    protected TestGateway Gateway { get; private set; } = null!;

    /// <summary>Settings on top of <see cref="TestGateway.ShortTimings"/>.</summary>
    protected virtual IReadOnlyDictionary<string, string?>? Settings => null;

    public async Task InitializeAsync() => Gateway = await TestGateway.StartAsync(Settings);

    public virtual async Task DisposeAsync() => await Gateway.DisposeAsync();
}
