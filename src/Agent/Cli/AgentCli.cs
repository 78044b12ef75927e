using System.CommandLine;
using System.CommandLine.Help;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.RegularExpressions;
using EphemeralOrleans.Agent.Control;

namespace EphemeralOrleans.Agent.Cli;

/// <summary>The command tree: <c>up</c>, <c>status</c>, <c>netmap</c>, <c>logout</c>, the admin commands, <c>help</c> and
/// <c>version</c>. Every failure is one line on stderr and an exit code from <see cref="ExitCodes"/>: usage errors
/// through <see cref="CliErrors"/>, anything unexpected through one handler here (the details with --verbose).</summary>
public static partial class AgentCli
{
    public static async Task<int> RunAsync(string[] args)
    {
        var verbose = args.Contains("--verbose");
        try
        {
            return await RunCoreAsync(args);
        }
        catch (Exception exception) when (exception is not OperationCanceledException)
        {
            Console.Error.WriteLine($"error: {CliErrors.Redact(CliErrors.OneLine(exception.Message), args)}{(verbose ? "" : " (--verbose shows the details)")}");
            if (verbose)
            {
                Console.Error.WriteLine(CliErrors.Redact(exception.ToString(), args));
            }

            return ExitCodes.Error;
        }
    }

    private static async Task<int> RunCoreAsync(string[] args)
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
        var caFile = new Option<GatewayTrust>("--ca-file")
        {
            Description = "Trust an https:// gateway whose certificate chains to a CA certificate (PEM) in this file, instead of the system's roots (env EO_CA_FILE).",
            DefaultValueFactory = result => TrustFrom(Environment.GetEnvironmentVariable("EO_CA_FILE") is { Length: > 0 } path ? path : null, result),
            CustomParser = result => TrustFrom(result.Tokens.Single().Value, result),
        };
        var json = new Option<bool>("--json") { Description = "One JSON object a line." };
        var socket = new Option<string>("--socket") { Description = "The running agent's local control socket.", DefaultValueFactory = _ => LocalApi.DefaultSocket };

        // up
        var authKey = new Option<string?>("--auth-key") { Description = "eo-auth-… key to register with (env EO_AUTH_KEY keeps it out of ps)." };
        var idTokenFile = new Option<string?>("--id-token-file") { Description = "Register with the OIDC ID token in this file instead of an auth key (env EO_ID_TOKEN holds one too): a trust policy of --tailnet must accept it." };
        var idTokenGitHub = new Option<bool>("--id-token-github") { Description = "Register with this GitHub Actions job's OIDC token (the job needs `permissions: id-token: write`)." };
        var idTokenAudience = new Option<string?>("--id-token-audience") { Description = "The audience to ask GitHub for (default: the --login-server URL)." };
        var tailnetName = new Option<string?>("--tailnet") { Description = "The tailnet whose trust policies judge the ID token (default -)." };
        var hostname = new Option<string>("--hostname") { Description = "The device's name.", DefaultValueFactory = _ => Environment.MachineName };
        var state = new Option<string>("--state")
        {
            Description = "mem: keeps the identity in memory (ephemeral node, logged out on exit); a path keeps it in that file (0600).",
            DefaultValueFactory = _ => UpOptions.MemoryState,
            CustomParser = result =>
            {
                var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
                if (text == UpOptions.MemoryState || (text.Length > 0 && text != "mem" && !SchemePrefix().IsMatch(text)))
                {
                    return text;
                }

                result.AddError($"--state takes mem: (memory only, the default) or a file path; '{text}' is neither{(text == "mem" ? " (mem: has a colon)" : "")}");
                return UpOptions.MemoryState;
            },
        };
        var transport = new Option<AgentTransport>("--transport")
        {
            Description = "grpc (default) or http (NDJSON stream).",
            DefaultValueFactory = _ => AgentTransport.Grpc,
            CustomParser = result =>
            {
                var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
                switch (text)
                {
                    case "grpc":
                        return AgentTransport.Grpc;
                    case "http":
                        return AgentTransport.Http;
                    default:
                        result.AddError($"--transport takes grpc or http, not '{text}'");
                        return AgentTransport.Grpc;
                }
            },
        };
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
        var relayAfter = new Option<TimeSpan>("--relay-after")
        {
            Description = "How long a peer that came online may go without a handshake on its direct endpoint before its packets go through the gateway's relay.",
            DefaultValueFactory = _ => TimeSpan.FromSeconds(2),
            CustomParser = Durations.Option,
        };
        var up = new Command("up", "Join the tailnet and follow its netmap until stopped.\n\nExample:\n  EO_AUTH_KEY=eo-auth-… eo up --hostname build-42 --login-server https://eo.example.com")
        {
            loginServer, authKey, idTokenFile, idTokenGitHub, idTokenAudience, tailnetName, hostname, state, json, transport, socket, connectTimeout,
            streamTimeout, listenPort, tun, relayAfter, caFile,
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
            parse.GetValue(tun)!,
            parse.GetValue(relayAfter))
        {
            IdTokenFile = parse.GetValue(idTokenFile),
            IdToken = Environment.GetEnvironmentVariable("EO_ID_TOKEN") is { Length: > 0 } token ? token : null,
            IdTokenGitHub = parse.GetValue(idTokenGitHub),
            IdTokenAudience = parse.GetValue(idTokenAudience),
            Tailnet = parse.GetValue(tailnetName),
            Trust = parse.GetValue(caFile)!,
        }).RunAsync());

        // logout, status, netmap: ask the agent that is up
        var logoutState = new Option<string?>("--state") { Description = "Log out the node saved in this state file (through its agent if it is up on --socket)." };
        var logout = new Command("logout", "Log the node out (an ephemeral node is removed at once) and stop the agent.\n\nExample:\n  eo logout") { socket, logoutState, json };
        logout.SetAction((parse, ct) => new LogoutCommand(parse.GetValue(socket)!, parse.GetValue(logoutState), new AgentOutput(parse.GetValue(json))).RunAsync(ct));

        var ipv6 = new Option<bool>("--ipv6") { Description = "Show IPv6 addresses too." };
        Command AskCommand(string name, string description) => new(name, description) { socket, json };
        var status = AskCommand("status", "This node and every peer: addresses, tags, online or last seen, and the tunnel's endpoint, handshake and bytes; exits 14 while not connected.\n\nExample:\n  eo status --ipv6");
        status.Options.Add(ipv6);
        var netmap = AskCommand("netmap", "The node and its peers.\n\nExample:\n  eo netmap --json | jq '.peers[].name'");
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

                Console.Out.WriteLine(parse.GetValue(json) ? JsonSerializer.Serialize(answer, AgentOutput.Json) : Render.Human(command.Name, answer, parse.GetValue(ipv6)));
                return command == status && !answer.GetProperty("connected").GetBoolean() ? ExitCodes.GatewayUnreachable : ExitCodes.Ok;
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
                Console.Error.WriteLine("error: an admin key is needed: --admin-key or EO_ADMIN_KEY (admin_key_required)");
                return null;
            }

            return new AdminCommands(parse.GetValue(loginServer)!, parse.GetValue(caFile)!, key, parse.GetValue(tailnet)!, parse.GetValue(json), parse.GetValue(ipv6));
        }

        Command AdminCommand(string name, string description, params Option[] options)
        {
            var command = new Command(name, description) { loginServer, caFile, adminKey, tailnet, json };
            foreach (var option in options)
            {
                command.Options.Add(option);
            }

            return command;
        }

        var id = new Argument<string>("id") { Description = "An id, or a node's name (a key's description)." };
        var reusable = new Option<bool>("--reusable") { Description = "Usable any number of times (else once)." };
        var ephemeralKey = new Option<bool>("--ephemeral") { Description = "Nodes it registers are ephemeral." };
        var preauthorized = new Option<bool>("--preauthorized") { Description = "Nodes it registers need no approval." };
        var tags = new Option<string?>("--tags") { Description = "Comma-separated tags, e.g. tag:ci,tag:build." };
        var expiry = new Option<TimeSpan?>("--expiry") { Description = "Lifetime: 30m, 12h, 7d, 2w or hh:mm:ss.", CustomParser = r => Durations.Option(r) };
        var description = new Option<string?>("--description") { Description = "Shown in listings." };

        var keysCreate = AdminCommand("create", "Create an auth key; prints it once.\n\nExample:\n  KEY=$(eo keys create --reusable --ephemeral --preauthorized --tags tag:ci --expiry 1d --description ci)", reusable, ephemeralKey, preauthorized, tags, expiry, description);
        keysCreate.SetAction(parse => Admin(parse)?.CreateKeyAsync(parse.GetValue(reusable), parse.GetValue(ephemeralKey), parse.GetValue(preauthorized),
            (parse.GetValue(tags) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
            parse.GetValue(expiry), parse.GetValue(description)) ?? Task.FromResult(ExitCodes.Unauthorized));
        var keysList = AdminCommand("list", "List auth keys: state (valid, used, expired, revoked), uses, tags, expiry.\n\nExample:\n  eo keys list --json | jq '.keys[] | select(.revoked | not) | .id'");
        keysList.SetAction(parse => Admin(parse)?.ListKeysAsync() ?? Task.FromResult(ExitCodes.Unauthorized));
        var keysRevoke = AdminCommand("revoke", "Revoke a key; nodes it registered stay.\n\nExample:\n  eo keys revoke ci");
        keysRevoke.Arguments.Add(id);
        keysRevoke.SetAction(parse => Admin(parse)?.RevokeKeyAsync(parse.GetValue(id)!) ?? Task.FromResult(ExitCodes.Unauthorized));

        var nodesList = AdminCommand("list", "List nodes: name, addresses, tags, online or last seen.\n\nExample:\n  eo nodes list --ipv6", ipv6);
        nodesList.SetAction(parse => Admin(parse)?.ListNodesAsync() ?? Task.FromResult(ExitCodes.Unauthorized));
        var nodesDelete = AdminCommand("delete", "Remove a node at once.\n\nExample:\n  eo nodes delete build-41");
        nodesDelete.Arguments.Add(id);
        nodesDelete.SetAction(parse => Admin(parse)?.DeleteNodeAsync(parse.GetValue(id)!) ?? Task.FromResult(ExitCodes.Unauthorized));
        var nodesExpire = AdminCommand("expire", "End a node's credentials as a logout would: an ephemeral node is removed, another stays listed as logged out until it registers again.\n\nExample:\n  eo nodes expire build-41");
        nodesExpire.Arguments.Add(id);
        nodesExpire.SetAction(parse => Admin(parse)?.ExpireNodeAsync(parse.GetValue(id)!) ?? Task.FromResult(ExitCodes.Unauthorized));
        var newName = new Argument<string>("new-name") { Description = "1 to 63 of a-z, 0-9 and '-', free in the tailnet." };
        var nodesRename = AdminCommand("rename", "Give a node another name; its peers learn it at once.\n\nExample:\n  eo nodes rename build-41 db-primary");
        nodesRename.Arguments.Add(id);
        nodesRename.Arguments.Add(newName);
        nodesRename.SetAction(parse => Admin(parse)?.RenameNodeAsync(parse.GetValue(id)!, parse.GetValue(newName)!) ?? Task.FromResult(ExitCodes.Unauthorized));
        var nodesApprove = AdminCommand("approve", "Approve a node waiting for approval.\n\nExample:\n  eo nodes approve laptop");
        nodesApprove.Arguments.Add(id);
        nodesApprove.SetAction(parse => Admin(parse)?.ApproveNodeAsync(parse.GetValue(id)!) ?? Task.FromResult(ExitCodes.Unauthorized));

        var issuer = new Option<string>("--issuer") { Description = "The OIDC issuer URL (https; http only on loopback).", Required = true };
        var audiences = new Option<string>("--audience") { Description = "Accepted audiences, comma-separated.", Required = true };
        var subject = new Option<string>("--subject") { Description = "The token subject to accept: exact, or a glob with * and ?.", Required = true };
        var claims = new Option<string[]>("--claim") { Description = "name=value a token's claim must have exactly (repeatable).", AllowMultipleArgumentsPerToken = false };
        var needsApproval = new Option<bool>("--needs-approval") { Description = "With device approval on, an admin approves each node." };
        var trustCreate = AdminCommand("create", "Let tokens of an OIDC issuer join (workload identity); prints the policy's id.\n\nExample:\n  eo trust-policies create --issuer https://token.actions.githubusercontent.com --audience https://eo.example.com \\\n    --subject 'repo:acme/api:ref:refs/heads/*' --claim repository_owner=acme --tags tag:ci --description api-ci",
            issuer, audiences, subject, claims, tags, needsApproval, description);
        trustCreate.SetAction(parse =>
        {
            var pairs = (parse.GetValue(claims) ?? []).Select(c => c.Split('=', 2)).ToArray();
            if (pairs.FirstOrDefault(p => p.Length != 2 || p[0].Length == 0) is { } bad)
            {
                Console.Error.WriteLine($"error: --claim takes name=value, not '{string.Join('=', bad)}' (usage)");
                return Task.FromResult(ExitCodes.Usage);
            }

            return Admin(parse)?.CreateTrustPolicyAsync(parse.GetValue(issuer)!,
                parse.GetValue(audiences)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries), parse.GetValue(subject)!,
                pairs.ToDictionary(p => p[0], p => p[1]), (parse.GetValue(tags) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                parse.GetValue(needsApproval), parse.GetValue(description)) ?? Task.FromResult(ExitCodes.Unauthorized);
        });
        var trustList = AdminCommand("list", "List trust policies: issuer, audiences, subject, claims, tags.\n\nExample:\n  eo trust-policies list");
        trustList.SetAction(parse => Admin(parse)?.ListTrustPoliciesAsync() ?? Task.FromResult(ExitCodes.Unauthorized));
        var trustDelete = AdminCommand("delete", "Delete a trust policy (by id or description): no new nodes join through it; its nodes stay.\n\nExample:\n  eo trust-policies delete api-ci");
        trustDelete.Arguments.Add(id);
        trustDelete.SetAction(parse => Admin(parse)?.DeleteTrustPolicyAsync(parse.GetValue(id)!) ?? Task.FromResult(ExitCodes.Unauthorized));

        var since = new Option<string?>("--since") { Description = "Start after this event id (a 'next' cursor); default: the oldest kept." };
        var eventType = new Option<string?>("--type") { Description = "Only this event type, or a family: node.removed, node.*." };
        var eventNode = new Option<string?>("--node") { Description = "Only events about this node id." };
        var limit = new Option<int>("--limit") { Description = "At most this many events (without --follow), 1 to 100000.", DefaultValueFactory = _ => 100 };
        var follow = new Option<bool>("--follow", "-f") { Description = "Keep printing new events as they come, until stopped." };
        var adminLog = new Option<bool>("--admin-log") { Description = "The admin log instead: sign-ins, wrong keys, throttling, the admin key used from a new address." };
        var events = AdminCommand("events", "The tailnet's audit log: who did what, and why each node went; one line per event (--json: one object per line).\n\nExamples:\n  eo events --type node.removed\n  eo events --follow --json | jq 'select(.data.reason == \"inactivity\")'",
            since, eventType, eventNode, limit, follow, adminLog);
        events.SetAction(async (parse, cancellation) =>
        {
            if (parse.GetValue(limit) is < 1 or > 100_000)
            {
                Console.Error.WriteLine("error: --limit takes 1 to 100000 (usage)");
                return ExitCodes.Usage;
            }

            if (Admin(parse) is not { } commands)
            {
                return ExitCodes.Unauthorized;
            }

            // SIGTERM and Ctrl-C end --follow as its normal end (exit 0).
            using var stopping = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
            void Stop(PosixSignalContext context)
            {
                context.Cancel = true;
                stopping.Cancel();
            }

            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
            return await commands.EventsAsync(parse.GetValue(since), parse.GetValue(eventType), parse.GetValue(eventNode), parse.GetValue(limit),
                parse.GetValue(follow), parse.GetValue(adminLog), TimeSpan.FromSeconds(1), stopping.Token);
        });

        var helpTopic = new Argument<string[]>("command") { Arity = ArgumentArity.ZeroOrMore, Description = "The command to explain, e.g. keys create." };
        var helpCommand = new Command("help", "Explain eo or one of its commands.") { helpTopic };
        var version = new Command("version", "Print eo's version.") { json };
        var verbose = new Option<bool>("--verbose") { Description = "On an unexpected error, print its details.", Recursive = true };
        var root = new RootCommand("eo: join a tailnet (up), inspect it (status, netmap), leave it (logout), administer it (keys, nodes, trust-policies, events).")
        {
            up, logout, status, netmap,
            new Command("keys", "Auth keys (admin).") { keysCreate, keysList, keysRevoke },
            new Command("nodes", "Nodes (admin).") { nodesList, nodesDelete, nodesExpire, nodesRename, nodesApprove },
            new Command("trust-policies", "Who may join with an OIDC token instead of an auth key (admin).") { trustCreate, trustList, trustDelete },
            events,
            helpCommand, version, verbose,
        };
        helpCommand.SetAction(parse => root.Parse([.. parse.GetValue(helpTopic) ?? [], "--help"]).Invoke());
        version.SetAction(parse =>
        {
            var text = typeof(AgentCli).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0";
            Console.Out.WriteLine(parse.GetValue(json) ? JsonSerializer.Serialize(new { version = text }, AgentOutput.Json) : $"eo {text}");
            return ExitCodes.Ok;
        });
        root.SetAction(_ => root.Parse(["--help"]).Invoke());

        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            Console.Error.WriteLine($"error: {CliErrors.Describe(parsed, args)}");
            return ExitCodes.Usage;
        }

        // `up` handles SIGINT and SIGTERM itself (it logs out first); no forced termination by the parser.
        return await parsed.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null, EnableDefaultExceptionHandler = false });
    }

    /// <summary>The trust <c>--ca-file</c> (or EO_CA_FILE) names; a file that cannot be used is a usage error.</summary>
    private static GatewayTrust TrustFrom(string? path, System.CommandLine.Parsing.ArgumentResult result)
    {
        try
        {
            return GatewayTrust.Load(path);
        }
        catch (AgentFailure failure)
        {
            result.AddError(failure.Message);
            return GatewayTrust.System;
        }
    }

    /// <summary>A URL-like prefix (<c>file:</c>, <c>memory:</c>): not a path --state accepts.</summary>
    [GeneratedRegex(@"\A[A-Za-z][A-Za-z0-9+.-]*:")]
    private static partial Regex SchemePrefix();
}
