extern alias agent;
using System.Reflection;
using System.Text.RegularExpressions;
using EphemeralOrleans.Testing;
using EphemeralOrleans.Tests.Infrastructure;
using Xunit.Abstractions;

namespace EphemeralOrleans.Tests;

/// <summary>
/// <c>eo</c> as a script meets it, as a child process: every mistake, bad value, missing input and unreachable gateway
/// gives the exit code the README documents and one line on stderr — no stack trace, no secret echoed — and leaves
/// nothing behind (no node, no used key, no file).
/// </summary>
[Collection(TimingCollection.Name)]
public sealed partial class CliTests(ITestOutputHelper log) : GatewayTest, IDisposable
{
    private static readonly TimeSpan Within = TimeSpan.FromSeconds(30);
    private readonly string _directory = Directory.CreateTempSubdirectory("eo-cli-test-").FullName;

    private string LoginServer => Gateway.Http.BaseAddress!.ToString();

    [Fact]
    public async Task Every_mistake_gets_its_exit_code_one_line_no_stack_trace_no_secret_and_leaves_nothing()
    {
        var key = await Gateway.CreateKeyAsync(reusable: false);
        var secret = key.Str("key");
        var stopped = $"http://127.0.0.1:{FreePort.Next()}";
        var admin = new[] { "--login-server", LoginServer, "--admin-key", ApiClient.AdminKey };
        string Sock(string name) => Path.Combine(_directory, name + ".sock");
        var cases = new (string Name, string[] Args, Dictionary<string, string>? Environment, int ExitCode, string Says)[]
        {
            ("mistyped flag with a secret after it", ["up", "--tun", "none", "--authkey", secret, "--login-server", LoginServer, "--socket", Sock("a")], null, 2, "unknown flag --authkey (did you mean --auth-key?)"),
            ("secret where no argument belongs", ["up", "--tun", "none", secret, "--socket", Sock("b")], null, 2, "not shown"),
            ("mistyped command", ["stauts"], null, 2, "unknown command stauts (did you mean status?)"),
            ("mistyped subcommand", ["keys", "lsit", "--admin-key", "x"], null, 2, "did you mean list?"),
            ("bad duration", ["keys", "create", "--expiry", "abc", .. admin], null, 2, "--expiry takes a positive duration"),
            ("bad duration on up", ["up", "--tun", "none", "--connect-timeout", "5x", "--socket", Sock("c")], null, 2, "--connect-timeout takes a positive duration"),
            ("bare mem", ["up", "--tun", "none", "--state", "mem", "--auth-key", secret, "--login-server", LoginServer, "--socket", Sock("d")], null, 2, "mem: has a colon"),
            ("another scheme", ["up", "--tun", "none", "--state", "file:x", "--auth-key", secret, "--login-server", LoginServer, "--socket", Sock("e")], null, 2, "--state takes mem:"),
            ("upper-case transport", ["up", "--tun", "none", "--transport", "GRPC", "--socket", Sock("f")], null, 2, "--transport takes grpc or http"),
            ("bad login server", ["up", "--tun", "none", "--login-server", "ftp://x", "--socket", Sock("g")], null, 2, "--login-server must be an http"),
            ("no auth key", ["up", "--tun", "none", "--login-server", LoginServer, "--socket", Sock("h")], new() { ["EO_AUTH_KEY"] = "" }, 2, "An auth key or an ID token is needed"),
            ("bad hostname", ["up", "--tun", "none", "--hostname", "bad\u0001name", "--auth-key", secret, "--login-server", LoginServer, "--socket", Sock("i")], null, 2, "--hostname"),
            ("bad tag", ["keys", "create", "--tags", "ci", .. admin], null, 2, "--tags"),
            ("too long an expiry", ["keys", "create", "--expiry", "600w", .. admin], null, 2, "--expiry"),
            ("no admin key", ["nodes", "list", "--login-server", LoginServer], new() { ["EO_ADMIN_KEY"] = "" }, 18, "admin key is needed"),
            ("wrong admin key", ["nodes", "list", "--login-server", LoginServer, "--admin-key", "not-the-key"], null, 18, ""),
            ("missing id", ["keys", "revoke", .. admin], null, 2, "missing <id>"),
            ("gateway stopped", ["up", "--tun", "none", "--auth-key", secret, "--login-server", stopped, "--connect-timeout", "1s", "--socket", Sock("j")], null, 14, "unreachable"),
            ("admin against a stopped gateway", ["keys", "list", "--login-server", stopped, "--admin-key", "k"], null, 14, ""),
            ("the gRPC URL as login server", ["up", "--tun", "none", "--auth-key", secret, "--login-server", Gateway.GrpcUrl.ToString(), "--socket", Sock("l")], null, 2, "not the gRPC one"),
            ("no agent up", ["status", "--socket", Sock("k")], null, 17, "no agent is up"),
        };

        var results = await Task.WhenAll(cases.Select(c => AgentProcess.RunAsync(c.Args, Within, c.Environment)));
        foreach (var (c, (exitCode, output)) in cases.Zip(results))
        {
            log.WriteLine($"{c.Name}: exit {exitCode}: {output.Trim()}");
            Assert.True(exitCode == c.ExitCode, $"{c.Name}: expected exit {c.ExitCode}, got {exitCode}:\n{output}");
            var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.True(lines.Length == 1, $"{c.Name}: expected one line, got:\n{output}");
            Assert.Contains(c.Says, output);
            Assert.DoesNotContain("   at ", output);
            Assert.DoesNotContain("Exception", output);
            Assert.DoesNotContain("System.", output);
            Assert.DoesNotContain(secret, output);
            Assert.DoesNotContain(ApiClient.AdminKey, output);
            Assert.DoesNotContain("not-the-key", output);
        }

        // Nothing was made: no node, the single-use key unused, no state file.
        Assert.Empty(await Gateway.ListNodesAsync());
        Assert.Equal(0, (await Gateway.GetKeyAsync(key.Str("id"))).Body.GetProperty("uses").GetInt32());
        Assert.Single(await Gateway.ListKeysAsync());
        Assert.False(File.Exists("mem"));
        Assert.DoesNotContain(Directory.GetFiles(_directory), f => !f.EndsWith(".sock", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Eo_alone_help_and_version_explain_themselves_as_eo()
    {
        var (exitCode, output) = await AgentProcess.RunAsync([], Within);
        Assert.Equal(0, exitCode);
        foreach (var command in new[] { "up", "status", "netmap", "logout", "keys", "nodes", "help", "version" })
        {
            Assert.Matches($@"(?m)^\s+{command}\b", output);
        }

        Assert.Contains("eo [command]", output);
        Assert.DoesNotContain("EphemeralOrleans.Agent", output);

        (exitCode, output) = await AgentProcess.RunAsync(["help", "keys", "create"], Within);
        Assert.Equal(0, exitCode);
        Assert.Contains("eo keys create [options]", output);
        Assert.Contains("Example:", output);
        Assert.Contains("--expiry", output);

        (exitCode, output) = await AgentProcess.RunAsync(["version"], Within);
        Assert.Equal(0, exitCode);
        Assert.Matches(@"\Aeo \d+\.\d+\.\d+", output.Trim());
    }

    [Fact]
    public void The_readme_exit_code_table_is_the_codes_table()
    {
        var codes = typeof(agent::EphemeralOrleans.Agent.Cli.ExitCodes).GetFields(BindingFlags.Public | BindingFlags.Static)
            .Select(f => (int)f.GetRawConstantValue()!).Order().ToArray();
        var readme = File.ReadAllText(Path.Combine(Path.GetDirectoryName(HostProcess.ProjectDll("Gateway"))!, "../../../../../README.md"));
        var documented = ExitCodeRow().Matches(readme).Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).Order().ToArray();
        Assert.Equal(codes, documented);
    }

    [Fact]
    public async Task Events_prints_the_audit_log_filters_it_follows_new_events_until_stopped_and_refuses_a_bad_type()
    {
        var admin = new[] { "--login-server", LoginServer, "--admin-key", ApiClient.AdminKey };
        var key = await Gateway.CreateKeyAsync(reusable: true, ephemeral: true);
        var (node, token) = await Gateway.RegisterAsync(key.Str("key"), hostname: "ci-7");
        Assert.Equal(System.Net.HttpStatusCode.NoContent, await Gateway.LogoutAsync(token));

        var (exitCode, output) = await AgentProcess.RunAsync(["events", .. admin], Within);
        Assert.True(exitCode == 0, output);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["ID", "TIME", "TYPE", "ACTOR", "TARGET", "DETAILS"], lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(["key.created", "node.registered", "node.removed", "address.released"], lines.Skip(1).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[3]));
        var removal = lines.Single(l => l.Contains("node.removed"));
        Assert.Contains($"node:{node.Str("id")}", removal);
        Assert.Contains("reason=logout", removal);

        (exitCode, output) = await AgentProcess.RunAsync(["events", "--type", "node.*", "--json", .. admin], Within);
        Assert.True(exitCode == 0, output);
        var objects = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.Clone()).ToArray();
        Assert.Equal(["node.registered", "node.removed"], objects.Select(o => o.Str("type")));
        Assert.Equal("logout", objects[1].GetProperty("data").Str("reason"));

        // --follow from the last event: a key created now is printed, and SIGTERM ends it with exit 0.
        var last = objects[^1].GetProperty("id").GetInt64() + 1; // address.released
        await using var follower = AgentProcess.Start(["events", "--follow", "--json", "--since", last.ToString(), .. admin]);
        await Task.Delay(500);
        var created = await Gateway.CreateKeyAsync(reusable: false);
        await Poll.UntilAsync(() => Task.FromResult(follower.Output.Contains(created.Str("id"))), Within, "the new key's event", why: () => follower.Output);
        Assert.DoesNotContain("node.registered", follower.Output);
        await follower.TerminateAsync();
        Assert.Equal(0, await follower.WaitForExitAsync(Within));

        (exitCode, output) = await AgentProcess.RunAsync(["events", "--type", "node.exploded", .. admin], Within);
        Assert.Equal(2, exitCode);
        Assert.StartsWith("error: --type: Unknown event type", Assert.Single(output.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
    }

    [Fact]
    public async Task The_lists_say_states_in_words_json_is_the_apis_objects_and_names_work_like_ids()
    {
        var admin = new[] { "--login-server", LoginServer, "--admin-key", ApiClient.AdminKey };
        async Task<string> Eo(params string[] args)
        {
            var (exitCode, output) = await AgentProcess.RunAsync([.. args, .. admin], Within);
            Assert.True(exitCode == 0, $"eo {string.Join(' ', args)}: exit {exitCode}\n{output}");
            return output;
        }

        // Keys: valid (tagged, reusable), used (single-use, spent), expired, revoked.
        var reusable = (await Eo("keys", "create", "--reusable", "--tags", "tag:ci", "--expiry", "2w", "--description", "build-cache")).Trim();
        Assert.StartsWith("eo-auth-", reusable);
        var single = await Gateway.CreateKeyAsync(reusable: false, ephemeral: false);
        var expiring = await Gateway.CreateKeyAsync(expirySeconds: 1);
        var revoked = await Gateway.CreateKeyAsync();
        Assert.Equal(System.Net.HttpStatusCode.NoContent, (await Gateway.RevokeKeyAsync(revoked.Str("id"))).Status);

        // Nodes: tagged and online, logged out, offline.
        var (online, onlineToken) = await Gateway.RegisterAsync(reusable, hostname: "runner");
        await using var stream = await Gateway.OpenMapAsync(onlineToken);
        var (leaver, leaverToken) = await Gateway.RegisterAsync(single.Str("key"), hostname: "leaver");
        Assert.Equal(System.Net.HttpStatusCode.NoContent, await Gateway.LogoutAsync(leaverToken));
        var (idle, _) = await Gateway.RegisterAsync(reusable, hostname: "idle");
        await Poll.UntilAsync(async () => (await Gateway.GetNodeAsync(online.Str("id")))!.Value.GetProperty("online").GetBoolean(), Within, "runner online");
        await Task.Delay(TimeSpan.FromSeconds(1.2)); // the 1 s key expires

        var keys = (await Eo("keys", "list")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Matches(@"\AID +STATE +USES +TYPE +TAGS +EXPIRES +DESCRIPTION\z", keys[0].TrimEnd());
        string Row(string[] lines, string id) => Assert.Single(lines, l => l.Contains(id, StringComparison.Ordinal));
        var reusableId = reusable.Split('-')[2];
        Assert.Matches(@" valid +2 +reusable +tag:ci +\d{4}-\d\d-\d\d \d\d:\d\dZ +build-cache", Row(keys, reusableId));
        Assert.Contains(" used ", Row(keys, single.Str("id")));
        Assert.Contains(" expired ", Row(keys, expiring.Str("id")));
        Assert.Contains(" revoked ", Row(keys, revoked.Str("id")));

        var nodes = (await Eo("nodes", "list", "--ipv6")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Matches(@"\ANAME +IPV4 +IPV6 +TAGS +STATE +KIND +ID\z", nodes[0].TrimEnd());
        Assert.Matches($@"\Arunner +{Regex.Escape(online.Str("ipv4"))} +{Regex.Escape(online.Str("ipv6"))} +tag:ci +online ", Row(nodes, online.Str("id")));
        Assert.Contains(" logged out ", Row(nodes, leaver.Str("id")));
        Assert.Matches(@" last seen \d+s ago ", Row(nodes, idle.Str("id")));

        // --json is the API's objects, as they are.
        foreach (var (args, path) in new[] { (new[] { "keys", "list", "--json" }, "/api/v1/tailnets/-/keys"), (["nodes", "list", "--json"], "/api/v1/tailnets/-/nodes") })
        {
            var printed = System.Text.Json.Nodes.JsonNode.Parse(await Eo(args));
            var api = System.Text.Json.Nodes.JsonNode.Parse(await Gateway.Admin.GetStringAsync(path));
            foreach (var volatileField in new[] { "lastSeen", "online" })
            {
                foreach (var item in new[] { printed, api }.SelectMany(d => (d!["keys"] ?? d["nodes"])!.AsArray()))
                {
                    item!.AsObject().Remove(volatileField);
                }
            }

            Assert.True(System.Text.Json.Nodes.JsonNode.DeepEquals(printed, api), $"{string.Join(' ', args)}:\n{printed}\n---\n{api}");
        }

        // By name as by id; a name nobody has exits 21.
        Assert.Contains("revoked key " + reusableId, await Eo("keys", "revoke", "build-cache"));
        Assert.Contains($"deleted idle ({idle.Str("id")})", await Eo("nodes", "delete", "idle"));
        Assert.Null(await Gateway.GetNodeAsync(idle.Str("id")));
        Assert.Contains($"renamed runner to db-1 ({online.Str("id")})", await Eo("nodes", "rename", "runner", "db-1"));
        Assert.Contains($"expired db-1 ({online.Str("id")}): logged out", await Eo("nodes", "expire", "db-1"));
        Assert.True((await Gateway.GetNodeAsync(online.Str("id")))!.Value.GetProperty("loggedOut").GetBoolean());
        var (exitCode, refused) = await AgentProcess.RunAsync(["nodes", "rename", "db-1", "Bad.Name", .. admin], Within);
        Assert.True(exitCode == 2, refused);
        Assert.Contains("invalid_name", refused);
        (exitCode, var missing) = await AgentProcess.RunAsync(["nodes", "delete", "nobody", .. admin], Within);
        Assert.True(exitCode == 21, missing);
        Assert.Contains("No node has the id or name 'nobody'", missing);
    }

    [Fact]
    public async Task Status_lists_every_peer_up_tells_changes_by_name_and_status_exits_14_while_disconnected()
    {
        await using var gateway = await TestGateway.StartAsync();
        var server = gateway.Http.BaseAddress!.ToString();
        var plain = (await gateway.CreateKeyAsync()).Str("key");
        var tagged = (await gateway.CreateKeyAsync(tags: ["tag:db"])).Str("key");
        string Sock(string name) => Path.Combine(_directory, name + ".sock");
        await using var a = AgentProcess.Start(["up", "--tun", "none", "--hostname", "laptop", "--login-server", server, "--socket", Sock("a")],
            new Dictionary<string, string> { ["EO_AUTH_KEY"] = plain });
        await Poll.UntilAsync(() => Task.FromResult(a.Output.Contains("connected: laptop", StringComparison.Ordinal)), Within, "A connected");
        await using var b = AgentProcess.Start(["up", "--tun", "none", "--hostname", "db-1", "--login-server", server, "--socket", Sock("b")],
            new Dictionary<string, string> { ["EO_AUTH_KEY"] = tagged });
        await Poll.UntilAsync(() => Task.FromResult(a.Output.Contains("+ db-1 joined (100.", StringComparison.Ordinal)), Within, "A to tell that db-1 joined:\n" + a.Output);
        await Poll.UntilAsync(async () => (await AgentProcess.RunAsync(["status", "--socket", Sock("a")], Within)).Output.Contains(" online", StringComparison.Ordinal), Within, "db-1 online at A");

        var (exitCode, status) = await AgentProcess.RunAsync(["status", "--ipv6", "--socket", Sock("a")], Within);
        Assert.True(exitCode == 0, status);
        var lines = status.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("connected to ", lines[0]);
        Assert.Matches(@"\ANAME +IPV4 +IPV6 +TAGS +STATE\z", lines[1].TrimEnd());
        Assert.StartsWith("laptop (this node) ", lines[2]);
        Assert.Matches(@"\Adb-1 +100\.[\d.]+ +fd7a:[\da-f:]+ +tag:db +online\z", lines[3].TrimEnd());
        (exitCode, status) = await AgentProcess.RunAsync(["status", "--json", "--socket", Sock("a")], Within);
        Assert.Equal(0, exitCode);
        var peer = Assert.Single(System.Text.Json.JsonDocument.Parse(status).RootElement.GetProperty("peerStatus").EnumerateArray());
        Assert.Equal("db-1", peer.Str("name"));
        Assert.Equal(["tag:db"], peer.GetProperty("tags").EnumerateArray().Select(t => t.GetString()));

        (exitCode, var loggedOut) = await AgentProcess.RunAsync(["logout", "--socket", Sock("b")], Within);
        Assert.True(exitCode == 0, loggedOut);
        await Poll.UntilAsync(() => Task.FromResult(a.Output.Contains("- db-1 left", StringComparison.Ordinal)), Within, "A to tell that db-1 left:\n" + a.Output);

        await gateway.DisposeAsync();
        await Poll.UntilAsync(async () => (await AgentProcess.RunAsync(["status", "--socket", Sock("a")], Within)).ExitCode == 14, Within, "status to exit 14 once the gateway is gone");
        Assert.StartsWith("disconnected from ", (await AgentProcess.RunAsync(["status", "--socket", Sock("a")], Within)).Output);
    }

    [Fact]
    public void A_lost_grpc_connection_is_told_in_a_users_words_not_the_transports()
    {
        var lost = new Grpc.Core.RpcException(new Grpc.Core.Status(Grpc.Core.StatusCode.Unavailable, "Error connecting to subchannel.",
            new System.Net.Http.HttpRequestException("Connection refused (127.0.0.1:1)", new System.Net.Sockets.SocketException((int)System.Net.Sockets.SocketError.ConnectionRefused))));
        var failure = agent::EphemeralOrleans.Agent.Control.GrpcControlClient.Translate(lost);
        Assert.Equal("unreachable", failure.Code);
        Assert.True(failure.Transient);
        Assert.Contains("connection refused", failure.Message);
        Assert.DoesNotContain("subchannel", failure.Message);
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [GeneratedRegex(@"(?m)^\| (\d+) \| ")]
    private static partial Regex ExitCodeRow();
}
