using System.Diagnostics;
using System.Text.Json;
using EphemeralOrleans.Testing;
using EphemeralOrleans.Tests.Infrastructure;
using Xunit.Abstractions;

namespace EphemeralOrleans.Tests;

/// <summary>
/// The agent as a real child process against a real gateway, as CI jobs and containers run it. Deadline assertions run
/// alone (see <see cref="TimingCollection"/>): process start-up competes for the same two cores as everything else.
/// </summary>
[Collection(TimingCollection.Name)]
public sealed class AgentTests(ITestOutputHelper log) : GatewayTest, IDisposable
{
    private static readonly TimeSpan Within = TimeSpan.FromSeconds(20);
    private readonly string _directory = Directory.CreateTempSubdirectory("eo-agent-test-").FullName;

    private string LoginServer => Gateway.Http.BaseAddress!.ToString();

    [Fact]
    public async Task Up_is_online_within_a_second_and_sigterm_with_memory_state_removes_the_node_within_two()
    {
        var key = (await Gateway.CreateKeyAsync(reusable: false, ephemeral: false)).Str("key");
        var started = Stopwatch.StartNew();
        await using var agent = Up("ci-job", new Dictionary<string, string> { ["EO_AUTH_KEY"] = key });
        var online = await Poll.UntilValueAsync(async () => (await Gateway.ListNodesAsync())
            .Where(n => n.Str("hostname") == "ci-job" && n.GetProperty("online").GetBoolean()).Select(n => (JsonElement?)n).FirstOrDefault(),
            Within, "the agent's node to be online", everyMs: 20);
        var upTime = started.Elapsed;
        log.WriteLine($"online {upTime.TotalMilliseconds:0} ms after the agent process started");
        Assert.True(upTime < TimeSpan.FromSeconds(1), $"online {upTime} after the agent started:\n{agent.Output}");
        // --state mem: makes the node ephemeral even though the key is not.
        Assert.True(online.GetProperty("ephemeral").GetBoolean());

        var status = await AskAsync("status");
        Assert.True(status.GetProperty("connected").GetBoolean());
        Assert.Equal([online.Str("ipv4"), online.Str("ipv6")], status.GetProperty("addresses").EnumerateArray().Select(a => a.GetString()));
        Assert.Equal(0, status.GetProperty("peers").GetInt32());

        var stopped = Stopwatch.StartNew();
        await agent.TerminateAsync();
        await Poll.UntilAsync(async () => await Gateway.GetNodeAsync(online.Str("id")) is null, Within, "the node to be removed", everyMs: 20);
        log.WriteLine($"removed {stopped.Elapsed.TotalMilliseconds:0} ms after SIGTERM");
        Assert.True(stopped.Elapsed < TimeSpan.FromSeconds(2), $"removed {stopped.Elapsed} after SIGTERM");
        Assert.Equal(0, await agent.WaitForExitAsync(Within));
        await agent.WaitForEventAsync("logged_out", Within);
        // The audit log tells why: the agent exited (not a logout someone asked for, not inactivity).
        var removed = Assert.Single(await Gateway.AllEventsAsync(type: "node.removed", node: online.Str("id")));
        Assert.Equal(("agent-exit", $"node:{online.Str("id")}"), (removed.GetProperty("data").Str("reason"), removed.Str("actor")));
    }

    [Fact]
    public async Task An_agent_killed_with_sigkill_leaves_its_node_until_the_inactivity_timeout()
    {
        var key = (await Gateway.CreateKeyAsync()).Str("key");
        await using var agent = Up("killed", new Dictionary<string, string> { ["EO_AUTH_KEY"] = key });
        var node = (await agent.WaitForEventAsync("netmap", Within)).GetProperty("self");
        await Poll.UntilAsync(async () => (await Gateway.GetNodeAsync(node.Str("id")))?.GetProperty("online").GetBoolean() == true, Within, "online");

        // Started before the kill: it can only overstate how long the node has been offline.
        var killed = Stopwatch.StartNew();
        await agent.KillAsync();
        await Poll.UntilAsync(async () => await Gateway.GetNodeAsync(node.Str("id")) is null, Within, "the node to be removed");
        // Timeout 2 s; no later than the timeout + max(10%, 2 s), plus polling and process-exit overhead.
        log.WriteLine($"removed {killed.Elapsed.TotalMilliseconds:0} ms after SIGKILL");
        Assert.True(killed.Elapsed >= TimeSpan.FromSeconds(2), $"removed {killed.Elapsed} after SIGKILL, before the timeout");
        Assert.True(killed.Elapsed <= TimeSpan.FromSeconds(4.75), $"removed {killed.Elapsed} after SIGKILL");
    }

    [Fact]
    public async Task Two_agents_with_one_single_use_key_one_joins_and_the_other_exits_with_key_used()
    {
        var key = (await Gateway.CreateKeyAsync(reusable: false)).Str("key");
        var environment = new Dictionary<string, string> { ["EO_AUTH_KEY"] = key };
        await using var first = Up("first", environment, socket: "first.sock");
        await using var second = Up("second", environment, socket: "second.sock");

        await Poll.UntilAsync(() => Task.FromResult(first.HasExited || second.HasExited), Within, "one agent to give up");
        var (loser, winner) = first.HasExited ? (first, second) : (second, first);
        Assert.Equal(13, loser.ExitCode);
        Assert.Contains("key_used", loser.Output);
        await winner.WaitForEventAsync("netmap", Within);
        Assert.False(winner.HasExited);
        Assert.Single(await Gateway.ListNodesAsync());
    }

    [Fact]
    public async Task Refusals_and_an_unreachable_gateway_have_their_own_exit_codes()
    {
        var revoked = await Gateway.CreateKeyAsync();
        Assert.Equal(System.Net.HttpStatusCode.NoContent, (await Gateway.RevokeKeyAsync(revoked.Str("id"))).Status);
        var valid = (await Gateway.CreateKeyAsync()).Str("key");
        var expiring = (await Gateway.CreateKeyAsync(expirySeconds: 1)).Str("key");
        await Task.Delay(TimeSpan.FromSeconds(1.2));

        var cases = new (string Key, string LoginServer, int ExitCode, string Code)[]
        {
            (revoked.Str("key"), LoginServer, 12, "key_revoked"),
            (expiring, LoginServer, 11, "key_expired"),
            (valid[..^4] + "AAAA", LoginServer, 10, "invalid_key"),
            (valid, $"http://127.0.0.1:{FreePort.Next()}", 14, "unreachable"),
        };
        var results = await Task.WhenAll(cases.Select((c, i) => AgentProcess.RunAsync(
            ["up", "--tun", "none", "--login-server", c.LoginServer, "--auth-key", c.Key, "--json", "--socket", Path.Combine(_directory, $"r{i}.sock"),
                "--connect-timeout", "00:00:02"], Within)));
        foreach (var (expected, (exitCode, output)) in cases.Zip(results))
        {
            Assert.True(exitCode == expected.ExitCode, $"expected exit {expected.ExitCode} for {expected.Code}, got {exitCode}:\n{output}");
            Assert.Contains(expected.Code, output);
        }

        Assert.Empty(await Gateway.ListNodesAsync());
    }

    [Fact]
    public async Task An_agent_with_a_state_file_resumes_the_same_node_after_a_restart()
    {
        var key = (await Gateway.CreateKeyAsync(ephemeral: false)).Str("key");
        var state = Path.Combine(_directory, "agent.state");
        var environment = new Dictionary<string, string> { ["EO_AUTH_KEY"] = key };
        Node first;
        await using (var agent = Up("server", environment, state: state))
        {
            first = Node.From((await agent.WaitForEventAsync("netmap", Within)).GetProperty("self"));
            Assert.True(OperatingSystem.IsWindows() || File.GetUnixFileMode(state) == (UnixFileMode.UserRead | UnixFileMode.UserWrite), "state file mode is not 0600");
            await agent.TerminateAsync();
            Assert.Equal(0, await agent.WaitForExitAsync(Within));
        }

        // A stopped agent with a state file does not log out: the node stays, and comes back with the same identity.
        Assert.NotNull(await Gateway.GetNodeAsync(first.Id));
        await using var restarted = Up("server", null, state: state);
        var resumed = Node.From((await restarted.WaitForEventAsync("resumed", Within)).GetProperty("node"));
        Assert.Equal(first, resumed);
        // Resuming is not registering: the key was used once.
        Assert.Equal(1, Assert.Single(await Gateway.ListKeysAsync()).GetProperty("uses").GetInt32());
        Assert.Single(await Gateway.ListNodesAsync());
    }

    [Theory]
    [InlineData("grpc")]
    [InlineData("http")]
    public async Task An_agent_whose_saved_token_stopped_working_registers_its_node_again_with_a_proof(string transport)
    {
        var key = await Gateway.CreateKeyAsync(ephemeral: false);
        var state = Path.Combine(_directory, $"{transport}.state");
        var environment = new Dictionary<string, string> { ["EO_AUTH_KEY"] = key.Str("key") };
        Node first;
        await using (var agent = Up("builder", environment, socket: $"{transport}.sock", state: state, transport: transport))
        {
            first = Node.From((await agent.WaitForEventAsync("netmap", Within)).GetProperty("self"));
            await agent.TerminateAsync();
            Assert.Equal(0, await agent.WaitForExitAsync(Within));
        }

        // The saved token no longer works (as after a token rotation elsewhere); the node and the private key remain.
        var saved = JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(state))!;
        saved["nodeToken"] = $"{first.Id}.{new string('A', 43)}";
        File.WriteAllText(state, JsonSerializer.Serialize(saved));

        await using var restarted = Up("builder", environment, socket: $"{transport}.sock", state: state, transport: transport);
        await restarted.WaitForEventAsync("expired", Within);
        var again = Node.From((await restarted.WaitForEventAsync("netmap", Within)).GetProperty("self"));
        // Only a proof of the node key's private half gets the node back: the same node, not a second one.
        Assert.Equal(first, again);
        Assert.Single(await Gateway.ListNodesAsync());
        Assert.Equal(2, (await Gateway.GetKeyAsync(key.Str("id"))).Body.GetProperty("uses").GetInt32());
    }

    [Fact]
    public async Task Agents_over_grpc_and_http_see_each_other_and_logout_removes_at_once()
    {
        var key = (await Gateway.CreateKeyAsync()).Str("key");
        var environment = new Dictionary<string, string> { ["EO_AUTH_KEY"] = key };
        await using var grpc = Up("over-grpc", environment, socket: "grpc.sock");
        var grpcSelf = (await grpc.WaitForEventAsync("netmap", Within)).GetProperty("self");
        await using var http = Up("over-http", environment, socket: "http.sock", transport: "http");
        var httpMap = await http.WaitForEventAsync("netmap", Within);
        Assert.Equal([grpcSelf.Str("id")], httpMap.Ids("peers"));
        var httpSelf = httpMap.GetProperty("self");
        await grpc.WaitForEventAsync("change", Within);

        var netmap = await AskAsync("netmap", "grpc.sock");
        Assert.Equal([httpSelf.Str("id")], netmap.Ids("peers"));

        var (exitCode, output) = await AgentProcess.RunAsync(["logout", "--socket", Path.Combine(_directory, "http.sock")], Within);
        Assert.True(exitCode == 0, output);
        Assert.Equal(0, await http.WaitForExitAsync(Within));
        Assert.Null(await Gateway.GetNodeAsync(httpSelf.Str("id")));
        await Poll.UntilAsync(async () => (await AskAsync("netmap", "grpc.sock")).Ids("peers").Length == 0, Within, "the peer's removal on the gRPC agent");
    }

    [Fact]
    public async Task A_second_up_on_a_taken_socket_exits_at_once_with_one_line_and_registers_nothing()
    {
        await using var first = Up("first", new Dictionary<string, string> { ["EO_AUTH_KEY"] = (await Gateway.CreateKeyAsync()).Str("key") }, socket: "taken.sock");
        await first.WaitForEventAsync("netmap", Within);
        var singleUse = await Gateway.CreateKeyAsync(reusable: false);

        var clock = Stopwatch.StartNew();
        var (exitCode, output) = await AgentProcess.RunAsync(["up", "--tun", "none", "--login-server", LoginServer, "--hostname", "second",
            "--socket", Path.Combine(_directory, "taken.sock")], Within, new Dictionary<string, string> { ["EO_AUTH_KEY"] = singleUse.Str("key") });
        log.WriteLine($"second up exited {exitCode} after {clock.ElapsedMilliseconds} ms: {output}");
        Assert.Equal(19, exitCode);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"exited after {clock.Elapsed}");
        var line = Assert.Single(output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        Assert.Contains("agent_running", line);

        // Nothing reached the gateway: no second node, the single-use key unused; the first agent is unaffected.
        Assert.Single(await Gateway.ListNodesAsync());
        Assert.Equal(0, (await Gateway.GetKeyAsync(singleUse.Str("id"))).Body.GetProperty("uses").GetInt32());
        Assert.True((await AskAsync("status", "taken.sock")).GetProperty("connected").GetBoolean());
        Assert.False(first.HasExited);
    }

    [Fact]
    public async Task Logout_with_a_missing_state_file_says_so_and_leaves_the_running_agent_alone()
    {
        await using var agent = Up("bystander", new Dictionary<string, string> { ["EO_AUTH_KEY"] = (await Gateway.CreateKeyAsync()).Str("key") });
        var self = (await agent.WaitForEventAsync("netmap", Within)).GetProperty("self");

        var missing = Path.Combine(_directory, "missing.state");
        var (exitCode, output) = await AgentProcess.RunAsync(["logout", "--socket", Path.Combine(_directory, "agent.sock"), "--state", missing], Within);
        Assert.True(exitCode == 2, $"exit {exitCode}: {output}");
        Assert.Contains("does not exist", output);
        Assert.Contains(missing, output);

        Assert.False(agent.HasExited);
        Assert.True((await Gateway.GetNodeAsync(self.Str("id")))!.Value.GetProperty("online").GetBoolean());
    }

    [Fact]
    public async Task The_connect_timeout_is_honoured_to_the_second()
    {
        var clock = Stopwatch.StartNew();
        var (exitCode, output) = await AgentProcess.RunAsync(["up", "--tun", "none", "--login-server", $"http://127.0.0.1:{FreePort.Next()}", "--auth-key", "eo-auth-a-b",
            "--socket", Path.Combine(_directory, "timeout.sock"), "--connect-timeout", "3s"], Within);
        log.WriteLine($"gave up after {clock.ElapsedMilliseconds} ms: {output}");
        Assert.Equal(14, exitCode);
        Assert.Contains("within 3 s", output);
        // Measured from the process start: the timeout runs from the first attempt, after the runtime has started.
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(3), $"gave up after {clock.Elapsed}");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"gave up after {clock.Elapsed}");
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private AgentProcess Up(string hostname, IReadOnlyDictionary<string, string>? environment, string socket = "agent.sock",
        string state = "mem:", string transport = "grpc") =>
        AgentProcess.Start(["up", "--tun", "none", "--login-server", LoginServer, "--hostname", hostname, "--json", "--state", state,
            "--socket", Path.Combine(_directory, socket), "--transport", transport], environment);

    private async Task<JsonElement> AskAsync(string command, string socket = "agent.sock")
    {
        var (exitCode, output) = await AgentProcess.RunAsync([command, "--json", "--socket", Path.Combine(_directory, socket)], Within);
        Assert.True(exitCode == 0, output);
        return JsonDocument.Parse(output).RootElement.Clone();
    }

    private sealed record Node(string Id, string Name, string Ipv4, string Ipv6)
    {
        public static Node From(JsonElement json) => new(json.Str("id"), json.Str("name"), json.Str("ipv4"), json.Str("ipv6"));
    }
}

/// <summary>The agent across a gateway restart on PostgreSQL: it reconnects to the same node, token and addresses.</summary>
public sealed class AgentRestartTests : PostgresTest
{
    private static readonly TimeSpan Within = TimeSpan.FromSeconds(60);

    [PostgresFact]
    public Task After_the_gateway_is_killed_and_restarted_the_agent_reconnects_to_the_same_node() => RestartAsync(kill: true, "grpc");

    /// <summary>A gateway shutting down ends streams as errors, never cleanly (which would tell agents their node is gone):
    /// a gRPC status over gRPC, a reset connection over HTTP.</summary>
    [PostgresFact]
    public Task After_the_gateway_stops_gracefully_and_restarts_a_grpc_agent_reconnects_to_the_same_node() => RestartAsync(kill: false, "grpc");

    [PostgresFact]
    public Task After_the_gateway_stops_gracefully_and_restarts_an_http_agent_reconnects_to_the_same_node() => RestartAsync(kill: false, "http");

    private async Task RestartAsync(bool kill, string transport)
    {
        var settings = new Dictionary<string, string>
        {
            ["Storage:Provider"] = "Postgres",
            ["ConnectionStrings:Postgres"] = await NewDatabaseAsync("agent"),
            ["Admin:ApiKey"] = ApiClient.AdminKey,
            ["Ephemeral:InactivityTimeout"] = "00:01:00",
            ["Map:KeepAliveInterval"] = "00:00:01",
            ["Silo:AdvertisedAddress"] = "127.0.0.1",
            ["Silo:Port"] = FreePort.Next().ToString(),
            ["Silo:GatewayPort"] = FreePort.Next().ToString(),
            ["Kestrel:Endpoints:Http:Url"] = $"http://127.0.0.1:{FreePort.Next()}",
            ["Kestrel:Endpoints:Grpc:Url"] = $"http://127.0.0.1:{FreePort.Next()}",
            ["Cluster:Id"] = "agent-" + Guid.NewGuid().ToString("N"),
        };
        await using var first = await HostProcess.StartGatewayAsync(settings);
        using var client = new GatewayClient(first.HttpUrl);
        var key = await client.CreateKeyAsync(reusable: false);
        var socket = Path.Combine(Path.GetTempPath(), $"eo-agent-{Guid.NewGuid():N}.sock");
        await using var agent = AgentProcess.Start(["up", "--tun", "none", "--login-server", first.HttpUrl.ToString(), "--hostname", "survivor", "--json",
            "--socket", socket, "--transport", transport], new Dictionary<string, string> { ["EO_AUTH_KEY"] = key.Str("key") });
        var before = (await agent.WaitForEventAsync("netmap", Within)).GetProperty("self");
        var controlKey = await client.ControlKeyAsync();

        if (kill)
        {
            await first.KillAsync();
        }
        else
        {
            await first.StopAsync(Within);
        }

        await agent.WaitForEventAsync("disconnected", Within);
        await using var second = await HostProcess.StartGatewayAsync(settings);

        var after = (await agent.WaitForEventAsync("netmap", Within, skip: 1)).GetProperty("self");
        Assert.Equal((before.Str("id"), before.Str("ipv4"), before.Str("ipv6")), (after.Str("id"), after.Str("ipv4"), after.Str("ipv6")));
        Assert.False(agent.HasExited);
        await Poll.UntilAsync(async () => (await client.GetNodeAsync(before.Str("id")))?.GetProperty("online").GetBoolean() == true,
            Within, "the node to be online again");
        // Reconnecting is not registering: the single-use key was used once and the node is the only one.
        Assert.Equal(1, (await client.GetKeyAsync(key.Str("id"))).Body.GetProperty("uses").GetInt32());
        Assert.Single(await client.ListNodesAsync());
        // The control key lives in the key ring: proofs made before the restart are checked with the same key after it.
        Assert.Equal(controlKey, await client.ControlKeyAsync());

        // The logs name nodes and keys, never secrets.
        Assert.DoesNotContain(key.Str("key").Split('-')[^1], first.Output + second.Output);
        File.Delete(socket); // the agent is killed at the end of the test: nothing else would remove it
    }
}

/// <summary>The agent's exit codes when its gateway is gone: a script must be able to trust them.</summary>
[Collection(TimingCollection.Name)]
public sealed class AgentGatewayDownTests : IDisposable
{
    private static readonly TimeSpan Within = TimeSpan.FromSeconds(30);
    private readonly string _directory = Directory.CreateTempSubdirectory("eo-agent-down-").FullName;

    [Fact]
    public async Task Logout_against_a_stopped_gateway_exits_non_zero_and_keeps_the_state_file()
    {
        await using var gateway = await HostProcess.StartGatewayAsync(new Dictionary<string, string>
        {
            ["Admin:ApiKey"] = ApiClient.AdminKey,
            ["Silo:AdvertisedAddress"] = "127.0.0.1",
            ["Silo:Port"] = FreePort.Next().ToString(),
            ["Silo:GatewayPort"] = FreePort.Next().ToString(),
        });
        using var client = new GatewayClient(gateway.HttpUrl);
        var key = await client.CreateKeyAsync(ephemeral: false);
        var state = Path.Combine(_directory, "agent.state");
        var socket = Path.Combine(_directory, "agent.sock");
        await using var agent = AgentProcess.Start(["up", "--tun", "none", "--login-server", gateway.HttpUrl.ToString(), "--hostname", "orphan", "--json",
            "--state", state, "--socket", socket], new Dictionary<string, string> { ["EO_AUTH_KEY"] = key.Str("key") });
        await agent.WaitForEventAsync("netmap", Within);

        await gateway.KillAsync();
        var (exitCode, output) = await AgentProcess.RunAsync(["logout", "--socket", socket], Within);
        Assert.True(exitCode == 14, $"logout exit {exitCode}: {output}");
        Assert.Contains("unreachable", output);
        // The node was not logged out, so its agent's state stays (a later logout --state can still do it).
        Assert.True(File.Exists(state));
        Assert.Equal(14, await agent.WaitForExitAsync(Within));

        // The same through the state file, with no agent up: non-zero, file kept.
        (exitCode, output) = await AgentProcess.RunAsync(["logout", "--socket", socket, "--state", state], Within);
        Assert.True(exitCode == 14, $"logout --state exit {exitCode}: {output}");
        Assert.True(File.Exists(state));
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);
}
