using System.Text.Json;
using EphemeralOrleans.Testing;
using EphemeralOrleans.Tests.Infrastructure;
using Xunit.Abstractions;

namespace EphemeralOrleans.Tests;

/// <summary>
/// Agents in network namespaces of their own (<see cref="NetworkLab"/>), talking to a gateway on the lab's bridge: what
/// they report of their network is what the namespace has, and follows it when it changes.
/// </summary>
public sealed class AgentNetworkTests(ITestOutputHelper log) : NetworkLabTest
{
    private static readonly TimeSpan Within = TimeSpan.FromSeconds(20);

    [NetworkFact]
    public async Task An_agent_reports_its_namespaces_addresses_with_its_listen_port_and_follows_a_new_address()
    {
        var (lab, gateway) = (Lab, Gateway);
        var (ns, address) = lab.AddHost();
        var key = (await gateway.CreateKeyAsync()).Str("key");
        var agent = Track(AgentProcess.Start(["up", "--login-server", gateway.Http.BaseAddress!.ToString(), "--hostname", "lab-agent", "--json",
            "--socket", Path.Combine(Directory, "agent.sock"), "--listen-port", "41641", "--tun", $"eo{lab.Subnet}a"], new Dictionary<string, string> { ["EO_AUTH_KEY"] = key }, inNamespace: ns));
        var self = (await agent.WaitForEventAsync("netmap", Within)).GetProperty("self");
        var node = await Poll.UntilValueAsync(async () => await gateway.GetNodeAsync(self.Str("id")) is { } n && Endpoints(n).Length > 0 ? n : (JsonElement?)null,
            Within, "the agent's endpoints");
        Assert.Equal([$"{address}:41641"], Endpoints(node));

        // A second address appears in the namespace: peers learn it without the agent restarting.
        var (exitCode, output) = NetworkLab.RunIn(ns, "ip", "addr", "add", $"198.18.{lab.Subnet}.200/24", "dev", "eth0");
        Assert.True(exitCode == 0, output);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await Poll.UntilAsync(async () => Endpoints((await gateway.GetNodeAsync(self.Str("id")))!.Value).Length == 2, Within, "the new endpoint");
        log.WriteLine($"new address reported after {clock.ElapsedMilliseconds} ms");
        Assert.Equal([$"{address}:41641", $"198.18.{lab.Subnet}.200:41641"], Endpoints((await gateway.GetNodeAsync(self.Str("id")))!.Value));
        await agent.WaitForEventAsync("endpoints", Within, skip: 1);
        await agent.TerminateAsync();
        Assert.Equal(0, await agent.WaitForExitAsync(Within));
    }

    private static string[] Endpoints(JsonElement node) => node.GetProperty("endpoints").EnumerateArray().Select(e => e.GetString()!).ToArray();
}
