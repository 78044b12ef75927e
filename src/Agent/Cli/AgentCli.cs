using System.CommandLine;
using System.Text.Json;
using EphemeralOrleans.Agent.Control;

namespace EphemeralOrleans.Agent.Cli;

/// <summary>The command tree: <c>up</c>, <c>status</c>, <c>netmap</c>, <c>logout</c>, and the admin commands.</summary>
public static class AgentCli
{
    public static async Task<int> RunAsync(string[] args)
    {
        var loginServer = new Option<Uri>("--login-server")
        {
            Description = "The gateway's HTTP URL (env EO_LOGIN_SERVER).",
            DefaultValueFactory = _ => new Uri(Environment.GetEnvironmentVariable("EO_LOGIN_SERVER") is { Length: > 0 } url ? url : "http://127.0.0.1:8080"),
            CustomParser = result =>
            {
                var text = result.Tokens.Single().Value;
                if (Uri.TryCreate(text, UriKind.Absolute, out var url) && url.Scheme is "http" or "https")
                {
                    return url;
                }

                result.AddError($"--login-server must be an http:// or https:// URL, not '{text}'.");
                return null;
            },
        };
        var json = new Option<bool>("--json") { Description = "One JSON object a line." };
        var socket = new Option<string>("--socket") { Description = "The running agent's local control socket.", DefaultValueFactory = _ => LocalApi.DefaultSocket };

        // up
        var authKey = new Option<string?>("--auth-key") { Description = "eo-auth-… key to register with (env EO_AUTH_KEY keeps it out of ps)." };
        var hostname = new Option<string>("--hostname") { Description = "The device's name.", DefaultValueFactory = _ => Environment.MachineName };
        var state = new Option<string>("--state")
        {
            Description = "mem: keeps the identity in memory (ephemeral node, logged out on exit); a path keeps it in that file (0600).",
            DefaultValueFactory = _ => UpOptions.MemoryState,
        };
        var transport = new Option<AgentTransport>("--transport") { Description = "grpc (default) or http (NDJSON stream).", DefaultValueFactory = _ => AgentTransport.Grpc };
        var connectTimeout = new Option<TimeSpan>("--connect-timeout")
        {
            Description = "How long to keep trying to reach the gateway at start before giving up (exit 14).",
            DefaultValueFactory = _ => TimeSpan.FromSeconds(30),
            CustomParser = Durations.Option,
        };
        var streamTimeout = new Option<TimeSpan>("--stream-timeout")
        {
            Description = "A map stream silent this long (no keepalive either) is reconnected.",
            DefaultValueFactory = _ => TimeSpan.FromSeconds(90),
            CustomParser = Durations.Option,
        };
        var listenPort = new Option<int>("--listen-port")
        {
            Description = "The UDP port WireGuard listens on, reported to peers with this machine's addresses; 0 (default) picks one at random for this run.",
            CustomParser = result =>
            {
                var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
                if (int.TryParse(text, out var port) && port is >= 0 and <= 65535)
                {
                    return port == 0 ? Random.Shared.Next(20000, 60000) : port;
                }

                result.AddError($"--listen-port must be a port from 1 to 65535, or 0 for a random one; not '{text}'.");
                return 0;
            },
            DefaultValueFactory = _ => Random.Shared.Next(20000, 60000),
        };
        var tun = new Option<string>("--tun")
        {
            Description = "The WireGuard interface to create (unique on the machine; needs root or CAP_NET_ADMIN and wireguard-go), or none for control only.",
            DefaultValueFactory = _ => "eo0",
        };
        var up = new Command("up", "Join the tailnet and follow its netmap until stopped.")
        {
            loginServer, authKey, hostname, state, json, transport, socket, connectTimeout, streamTimeout, listenPort, tun,
        };
        up.SetAction(parse => new UpCommand(new UpOptions(
            parse.GetValue(loginServer)!,
            parse.GetValue(authKey) ?? Environment.GetEnvironmentVariable("EO_AUTH_KEY"),
            parse.GetValue(hostname)!,
            parse.GetValue(state)!,
            parse.GetValue(json),
            parse.GetValue(transport),
            parse.GetValue(socket)!,
            parse.GetValue(connectTimeout),
            parse.GetValue(streamTimeout),
            parse.GetValue(listenPort),
            parse.GetValue(tun)!)).RunAsync());

        // logout, status, netmap: ask the agent that is up
        var logoutState = new Option<string?>("--state") { Description = "Log out the node saved in this state file (through its agent if it is up on --socket)." };
        var logout = new Command("logout", "Log the node out (an ephemeral node is removed at once) and stop the agent.") { socket, logoutState, json };
        logout.SetAction((parse, ct) => new LogoutCommand(parse.GetValue(socket)!, parse.GetValue(logoutState), new AgentOutput(parse.GetValue(json))).RunAsync(ct));

        Command AskCommand(string name, string description) => new(name, description) { socket, json };
        var status = AskCommand("status", "Connected or not, addresses, peer count.");
        var netmap = AskCommand("netmap", "The node and its peers.");
        foreach (var command in new[] { status, netmap })
        {
            command.SetAction(async (parse, ct) =>
            {
                if (await LocalApi.TryAskAsync(parse.GetValue(socket)!, command.Name, ct) is not { } answer)
                {
                    Console.Error.WriteLine("error: no agent is up on that socket (start one with `up`).");
                    return ExitCodes.NotRunning;
                }

                if (answer.TryGetProperty("error", out var error))
                {
                    Console.Error.WriteLine($"error: {error.GetString()} ({answer.GetProperty("code").GetString()})");
                    return ExitCodes.Error;
                }

                Console.Out.WriteLine(parse.GetValue(json) ? JsonSerializer.Serialize(answer, AgentOutput.Json) : Render.Human(command.Name, answer));
                return ExitCodes.Ok;
            });
        }

        // keys …, nodes …: the admin API
        var adminKey = new Option<string?>("--admin-key") { Description = "The admin API key (env EO_ADMIN_KEY)." };
        var tailnet = new Option<string>("--tailnet") { Description = "The tailnet; - is the default one.", DefaultValueFactory = _ => "-" };
        AdminCommands? Admin(ParseResult parse)
        {
            var key = parse.GetValue(adminKey) ?? Environment.GetEnvironmentVariable("EO_ADMIN_KEY");
            if (string.IsNullOrEmpty(key))
            {
                Console.Error.WriteLine("An admin key is needed: --admin-key or EO_ADMIN_KEY.");
                return null;
            }

            return new AdminCommands(parse.GetValue(loginServer)!, key, parse.GetValue(tailnet)!, parse.GetValue(json));
        }

        Command AdminCommand(string name, string description, params Option[] options)
        {
            var command = new Command(name, description) { loginServer, adminKey, tailnet, json };
            foreach (var option in options)
            {
                command.Options.Add(option);
            }

            return command;
        }

        var id = new Argument<string>("id");
        var reusable = new Option<bool>("--reusable") { Description = "Usable any number of times (else once)." };
        var ephemeralKey = new Option<bool>("--ephemeral") { Description = "Nodes it registers are ephemeral." };
        var preauthorized = new Option<bool>("--preauthorized") { Description = "Nodes it registers need no approval." };
        var tags = new Option<string?>("--tags") { Description = "Comma-separated tags, e.g. tag:ci,tag:build." };
        var expiry = new Option<TimeSpan?>("--expiry") { Description = "Lifetime, e.g. 01:00:00 or 1h." , CustomParser = r => Durations.Option(r) };
        var description = new Option<string?>("--description") { Description = "Shown in listings." };

        var keysCreate = AdminCommand("create", "Create an auth key; prints it once.", reusable, ephemeralKey, preauthorized, tags, expiry, description);
        keysCreate.SetAction(parse => Admin(parse)?.CreateKeyAsync(parse.GetValue(reusable), parse.GetValue(ephemeralKey), parse.GetValue(preauthorized),
            (parse.GetValue(tags) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
            parse.GetValue(expiry), parse.GetValue(description)) ?? Task.FromResult(ExitCodes.Usage));
        var keysList = AdminCommand("list", "List auth keys with uses and state.");
        keysList.SetAction(parse => Admin(parse)?.ListKeysAsync() ?? Task.FromResult(ExitCodes.Usage));
        var keysRevoke = AdminCommand("revoke", "Revoke a key; nodes it registered stay.");
        keysRevoke.Arguments.Add(id);
        keysRevoke.SetAction(parse => Admin(parse)?.RevokeKeyAsync(parse.GetValue(id)!) ?? Task.FromResult(ExitCodes.Usage));

        var nodesList = AdminCommand("list", "List nodes.");
        nodesList.SetAction(parse => Admin(parse)?.ListNodesAsync() ?? Task.FromResult(ExitCodes.Usage));
        var nodesDelete = AdminCommand("delete", "Remove a node at once.");
        nodesDelete.Arguments.Add(id);
        nodesDelete.SetAction(parse => Admin(parse)?.DeleteNodeAsync(parse.GetValue(id)!) ?? Task.FromResult(ExitCodes.Usage));
        var nodesApprove = AdminCommand("approve", "Approve a node waiting for approval.");
        nodesApprove.Arguments.Add(id);
        nodesApprove.SetAction(parse => Admin(parse)?.ApproveNodeAsync(parse.GetValue(id)!) ?? Task.FromResult(ExitCodes.Usage));

        var root = new RootCommand("EphemeralOrleans agent: join a tailnet (up), inspect it (status, netmap), leave it (logout), administer it (keys, nodes).")
        {
            up, logout, status, netmap,
            new Command("keys", "Auth keys (admin).") { keysCreate, keysList, keysRevoke },
            new Command("nodes", "Nodes (admin).") { nodesList, nodesDelete, nodesApprove },
        };

        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var error in parsed.Errors)
            {
                Console.Error.WriteLine(error.Message);
            }

            return ExitCodes.Usage;
        }

        // `up` handles SIGINT and SIGTERM itself (it logs out first); no forced termination by the parser.
        return await parsed.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
    }
}
