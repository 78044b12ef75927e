using System.Runtime.InteropServices;
using EphemeralOrleans.Agent.Control;
using EphemeralOrleans.Agent.Dataplane;
using EphemeralOrleans.Agent.State;

namespace EphemeralOrleans.Agent.Cli;

/// <summary>What <c>up</c> was asked to do.</summary>
public sealed record UpOptions(
    Uri LoginServer,
    string? AuthKey,
    string Hostname,
    string State,
    bool Json,
    AgentTransport Transport,
    string Socket,
    TimeSpan ConnectTimeout,
    TimeSpan StreamTimeout,
    int ListenPort,
    string Tun,
    TimeSpan RelayAfter)
{
    public const string MemoryState = "mem:";

    /// <summary><c>--tun none</c>: control only, no WireGuard interface (tests without packets, unprivileged runs).</summary>
    public const string NoTun = "none";

    public bool ControlOnly => Tun == NoTun;

    /// <summary><c>--id-token-file</c>: register with the OIDC ID token in this file.</summary>
    public string? IdTokenFile { get; init; }

    /// <summary><c>EO_ID_TOKEN</c>: register with this OIDC ID token.</summary>
    public string? IdToken { get; init; }

    /// <summary><c>--id-token-github</c>: register with the GitHub Actions job's OIDC token.</summary>
    public bool IdTokenGitHub { get; init; }

    public string? IdTokenAudience { get; init; }

    public string? Tailnet { get; init; }

    /// <summary><c>--ca-file</c>: the certificates accepted from an <c>https://</c> gateway.</summary>
    public GatewayTrust Trust { get; init; } = GatewayTrust.System;

    /// <summary><c>--state mem:</c>: nothing on disk, the node is ephemeral and goes when the agent exits.</summary>
    public bool InMemory => State == MemoryState;
}

/// <summary>
/// <c>up</c>: claims the local socket, joins through a <see cref="ControlSession"/> (registering, or resuming the node
/// in the state file), serves the local API, and on SIGINT or SIGTERM with in-memory state, or on <c>logout</c>, logs
/// out so that the node is removed at once. Every way out is one line and an exit code.
/// </summary>
public sealed class UpCommand(UpOptions options)
{
    private readonly AgentOutput _output = new(options.Json);
    private readonly CancellationTokenSource _stopping = new();

    /// <summary>The outcome a <c>logout</c> request waits for; completed on every way out.</summary>
    private readonly TaskCompletionSource<LogoutOutcome?> _loggedOut = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ControlSession? _session;
    private Reconciler? _dataplane;
    private volatile bool _logoutRequested;
    private volatile Exception? _dataplaneFailure;

    public async Task<int> RunAsync()
    {
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        try
        {
            return await RunUntilStoppedAsync();
        }
        catch (AgentFailure failure)
        {
            _output.Error(failure.Code, failure.FlagMessage);
            return failure.ExitCode;
        }
        catch (InvalidDataException exception)
        {
            _output.Error("state_invalid", exception.Message);
            return ExitCodes.Usage;
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            _output.Error("local_error", exception.Message);
            return ExitCodes.Error;
        }
        finally
        {
            if (_dataplane is not null)
            {
                await _dataplane.DisposeAsync();
            }

            _session?.Dispose();
        }
    }

    private void Stop(PosixSignalContext context)
    {
        context.Cancel = true;
        _stopping.Cancel();
    }

    private async Task<int> RunUntilStoppedAsync()
    {
        var saved = options.InMemory ? null : AgentState.Load(options.State);
        if (saved is not null && saved.LoginServer != options.LoginServer.ToString())
        {
            _output.Error("state_mismatch", $"{options.State} belongs to {saved.LoginServer}; use another --state for {options.LoginServer}.");
            return ExitCodes.Usage;
        }

        var ways = new[] { !string.IsNullOrEmpty(options.AuthKey), options.IdTokenFile is not null, options.IdToken is not null, options.IdTokenGitHub }.Count(given => given);
        if (ways > 1)
        {
            _output.Error("credential_conflict", "Give one way to register: --auth-key (EO_AUTH_KEY), --id-token-file, EO_ID_TOKEN or --id-token-github.");
            return ExitCodes.Usage;
        }

        if (saved is null && ways == 0)
        {
            _output.Error("auth_key_required", "An auth key or an ID token is needed to register: --auth-key or EO_AUTH_KEY; --id-token-file, EO_ID_TOKEN or --id-token-github.");
            return ExitCodes.Usage;
        }

        IdTokenSource? idToken = null;
        if (options.IdTokenGitHub)
        {
            (idToken, var missing) = IdTokenSource.FromGitHubActions(options.IdTokenAudience ?? options.LoginServer.ToString().TrimEnd('/'));
            if (missing is not null)
            {
                _output.Error("id_token_unavailable", missing);
                return ExitCodes.Usage;
            }
        }
        else if (options.IdTokenFile is { } file)
        {
            idToken = IdTokenSource.FromFile(file);
        }
        else if (options.IdToken is { } token)
        {
            idToken = IdTokenSource.FromValue(token);
        }

        // Before anything is made or registered: a machine that cannot have the interface gets one line.
        string? wireguardGo = null;
        if (!options.ControlOnly)
        {
            (wireguardGo, var missing) = Preflight.Check(options.Tun);
            if (missing is not null)
            {
                _output.Error("dataplane_unavailable", missing);
                return ExitCodes.Dataplane;
            }
        }

        // Before anything reaches the gateway: a second agent on this socket must not register a node (or use a key).
        await using var localApi = await LocalApi.ClaimAsync(options.Socket);
        localApi.Serve(HandleLocalAsync);

        try
        {
            var identity = saved is null ? NodeIdentity.Generate() : NodeIdentity.FromPrivateKey(Convert.FromBase64String(saved.PrivateKey));
            if (wireguardGo is not null)
            {
                // The node key is the WireGuard key. The device comes up before the node registers, so a failure here
                // leaves no node behind; it gets its peers from the first map.
                _dataplane = new Reconciler(options.Tun, identity, options.ListenPort, wireguardGo, _output, options.RelayAfter);
                await _dataplane.UpAsync(_stopping.Token);
                _ = _dataplane.Failed.ContinueWith(failed =>
                {
                    _dataplaneFailure = failed.Result;
                    _stopping.Cancel();
                }, TaskScheduler.Default);
            }

            _session = new ControlSession(
                new ControlSessionOptions(options.LoginServer, options.AuthKey, options.Hostname, options.Transport, options.ConnectTimeout,
                    options.StreamTimeout, Ephemeral: options.InMemory, StateFile: options.InMemory ? null : options.State,
                    ListenPort: options.ControlOnly ? null : options.ListenPort, EndpointCheckInterval: TimeSpan.FromSeconds(5))
                {
                    IdToken = idToken,
                    Tailnet = options.Tailnet,
                    Trust = options.Trust,
                },
                identity, saved, _output, _dataplane is { } dataplane ? dataplane.Offer : null);
            if (!await _session.StartAsync(_stopping.Token))
            {
                return Stopped();
            }

            var session = _session;
            _dataplane?.StartRelay(options.LoginServer, options.Trust, () => session.NodeToken);

            var exitCode = await _session.FollowAsync(_stopping.Token);
            if (_dataplaneFailure is { } failure)
            {
                _output.Error("dataplane_failed", failure.Message);
                exitCode = ExitCodes.Dataplane;
            }

            if (exitCode is { } gone && _dataplaneFailure is null)
            {
                return gone;
            }

            // Stopped by a signal, by `logout`, or by a broken data plane.
            if (options.InMemory || _logoutRequested)
            {
                var outcome = await _session.LogoutAsync(agentExit: !_logoutRequested);
                _loggedOut.TrySetResult(outcome);
                return exitCode ?? outcome.Failure?.ExitCode ?? ExitCodes.Ok;
            }

            return exitCode ?? Stopped();
        }
        catch (DataplaneException exception)
        {
            _output.Error("dataplane_unavailable", exception.Message);
            return ExitCodes.Dataplane;
        }
        finally
        {
            // A `logout` still waiting gets its answer before the local API closes.
            _loggedOut.TrySetResult(null);
        }
    }

    private int Stopped()
    {
        _output.Event("stopped", null, "stopped");
        return ExitCodes.Ok;
    }

    private async Task<object> HandleLocalAsync(string request)
    {
        var netmap = _session?.Netmap;
        switch (request)
        {
            case "status" or "netmap" when netmap is null:
                return new { code = "starting", error = "The agent is still joining its tailnet." };
            case "status":
                return netmap!.Status(options.LoginServer.ToString(), _dataplane is { } dataplane ? await dataplane.StatusAsync(netmap, CancellationToken.None) : null);
            case "netmap":
                return netmap!.Map();
            case "logout":
                _logoutRequested = true;
                await _stopping.CancelAsync();
                // Answered with what happened, so that `logout` can exit with it.
                return await _loggedOut.Task switch
                {
                    { Failure: null } done => new { loggedOut = done.NodeId },
                    { Failure: { } failure } => new { code = failure.Code, error = $"Logout failed: {failure.Message}" },
                    null => new { code = "not_logged_out", error = "The agent stopped before it could log out." },
                };
            default:
                return new { code = "unknown_request", error = $"Unknown request '{request}'." };
        }
    }
}
