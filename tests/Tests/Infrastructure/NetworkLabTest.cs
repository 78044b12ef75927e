using EphemeralOrleans.Testing;

namespace EphemeralOrleans.Tests.Infrastructure;

/// <summary>
/// A test class with its own <see cref="NetworkLab"/> and an in-process gateway listening on the lab's bridge, which
/// agents in the lab's namespaces reach. Agents started through <see cref="Track"/> are stopped as a user would
/// (SIGTERM) at the end, so each removes its device, its socket and its node; killed only if stuck.
/// </summary>
public abstract class NetworkLabTest : IAsyncLifetime
{
    private readonly List<AgentProcess> _agents = [];
    private NetworkLab? _lab;
    private TestGateway? _gateway;

    protected string Directory { get; } = System.IO.Directory.CreateTempSubdirectory("eo-lab-test-").FullName;

    protected NetworkLab Lab => _lab ?? throw new InvalidOperationException(NetworkLab.UnavailableReason());

    protected TestGateway Gateway => _gateway ?? throw new InvalidOperationException(NetworkLab.UnavailableReason());

    protected string LoginServer => Gateway.Http.BaseAddress!.ToString();

    public async Task InitializeAsync()
    {
        if (NetworkLab.UnavailableReason() is not null)
        {
            return; // the facts are skipped, or in CI fail on Lab
        }

        _lab = await NetworkLab.CreateAsync();
        _gateway = await TestGateway.StartAsync(new Dictionary<string, string?>
        {
            ["Kestrel:Endpoints:Http:Url"] = $"http://{_lab.HostAddress}:{FreePort.Next()}",
            ["Kestrel:Endpoints:Grpc:Url"] = $"http://{_lab.HostAddress}:{FreePort.Next()}",
        });
    }

    protected AgentProcess Track(AgentProcess agent)
    {
        _agents.Add(agent);
        return agent;
    }

    public async Task DisposeAsync()
    {
        await Task.WhenAll(_agents.Where(a => !a.HasExited).Select(async agent =>
        {
            await agent.TerminateAsync();
            try
            {
                await agent.WaitForExitAsync(TimeSpan.FromSeconds(10));
            }
            catch (TimeoutException)
            {
            }
        }));
        foreach (var agent in _agents)
        {
            await agent.DisposeAsync();
        }

        if (_gateway is not null)
        {
            await _gateway.DisposeAsync();
        }

        if (_lab is not null)
        {
            await _lab.DisposeAsync();
        }

        System.IO.Directory.Delete(Directory, recursive: true);
    }
}
