using System.Diagnostics;
using EphemeralOrleans.Agent.Cli;
using EphemeralOrleans.Agent.Dataplane;
using EphemeralOrleans.Agent.State;
using EphemeralOrleans.Protocol;
using EphemeralOrleans.Protocol.V1;

namespace EphemeralOrleans.Agent.Control;

public enum AgentTransport
{
    Grpc,
    Http,
}

/// <summary>How the session reaches its gateway and keeps its node.</summary>
public sealed record ControlSessionOptions(
    Uri LoginServer,
    string? AuthKey,
    string Hostname,
    AgentTransport Transport,
    TimeSpan ConnectTimeout,
    TimeSpan StreamTimeout,
    bool Ephemeral,
    string? StateFile,
    int? ListenPort,
    TimeSpan EndpointCheckInterval)
{
    /// <summary>Instead of <see cref="AuthKey"/>: where to get an OIDC ID token for a trust policy of <see cref="Tailnet"/>.</summary>
    public IdTokenSource? IdToken { get; init; }

    /// <summary>The tailnet whose trust policies judge <see cref="IdToken"/> (null: the default tailnet).</summary>
    public string? Tailnet { get; init; }

    /// <summary>The certificates accepted from an <c>https://</c> gateway (<c>--ca-file</c>).</summary>
    public GatewayTrust Trust { get; init; } = GatewayTrust.System;
}

/// <summary>A logout's outcome: done, or why not.</summary>
public sealed record LogoutOutcome(string NodeId, AgentFailure? Failure);

/// <summary>
/// The agent's link to the control plane: registers (or resumes the node of its state file), follows the netmap with
/// reconnects (capped exponential backoff, jitter), and logs out. Each map message yields a new immutable
/// <see cref="NetmapSnapshot"/> in <see cref="Netmap"/>; nothing slow runs inside the stream's loop.
/// </summary>
public sealed class ControlSession(ControlSessionOptions options, NodeIdentity identity, AgentState? saved, AgentOutput output,
    Action<NetmapSnapshot, MapResponse>? onNetmap = null) : IDisposable
{
    private static readonly TimeSpan LogoutDeadline = TimeSpan.FromSeconds(4);

    private IControlClient? _client;

    /// <summary>The gateways' control key from discovery; registrations carry a proof made with it.</summary>
    private byte[]? _controlKey;

    /// <summary>Serializes endpoint reports (the follow loop and the watcher) and the client swap on reconnect.</summary>
    private readonly SemaphoreSlim _clientGate = new(1, 1);

    private string? _nodeToken;
    private volatile NetmapSnapshot? _netmap;

    /// <summary>The endpoints the gateway has for this node; null when they must be sent again (a new node).</summary>
    private string[]? _reportedEndpoints;

    /// <summary>The node's current token (for the relay); null until registered or resumed.</summary>
    public string? NodeToken => _nodeToken;

    /// <summary>The latest netmap; null until the node is registered or resumed.</summary>
    public NetmapSnapshot? Netmap => _netmap;

    /// <summary>Connects and registers, or takes up the saved node. False when stopped meanwhile.</summary>
    /// <exception cref="AgentFailure">Refused, or the gateway could not be reached within the connect timeout.</exception>
    public async Task<bool> StartAsync(CancellationToken stopping)
    {
        _client = await ConnectAsync(stopping);
        if (_client is null)
        {
            return false;
        }

        if (saved is not null)
        {
            _nodeToken = saved.NodeToken;
            _netmap = NetmapSnapshot.Initial(new Node { Id = saved.NodeId, Name = options.Hostname });
            return true;
        }

        return await RegisterAsync(stopping) is not null;
    }

    /// <summary>Follows the map until stopped (null) or until the node is gone (an exit code, its reason reported).</summary>
    public async Task<int?> FollowAsync(CancellationToken stopping)
    {
        using var watching = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        var watcher = WatchEndpointsAsync(watching.Token);
        try
        {
            return await FollowMapAsync(stopping);
        }
        finally
        {
            await watching.CancelAsync();
            await watcher;
        }
    }

    private async Task<int?> FollowMapAsync(CancellationToken stopping)
    {
        var resumed = saved is not null;
        var backoff = new Backoff(TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(5));
        var everConnected = false;
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                // Peers learn where to reach this node before its stream counts it online.
                await ReportEndpointsAsync(stopping);
                using var silence = CancellationTokenSource.CreateLinkedTokenSource(stopping);
                silence.CancelAfter(options.StreamTimeout);
                await foreach (var message in _client!.MapAsync(_nodeToken!, silence.Token))
                {
                    silence.CancelAfter(options.StreamTimeout);
                    var before = _netmap!;
                    var netmap = before.Apply(message);
                    _netmap = netmap;
                    onNetmap?.Invoke(netmap, message);
                    switch (message.MessageCase)
                    {
                        case MapResponse.MessageOneofCase.Full:
                            if (!everConnected && resumed)
                            {
                                output.Registered(netmap.Self, resumed: true);
                            }

                            everConnected = true;
                            backoff.Reset();
                            output.Full(netmap);
                            break;
                        case MapResponse.MessageOneofCase.Delta:
                            output.Delta(message.Delta, before);
                            break;
                    }
                }

                if (stopping.IsCancellationRequested)
                {
                    break;
                }

                // The gateway ended the stream: the node was removed, logged out, or re-registered elsewhere.
                return NodeGone("The node was removed, logged out or re-registered; its stream ended.");
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                break;
            }
            catch (Exception exception) when (exception is OperationCanceledException or AgentFailure { Transient: true })
            {
                _netmap = _netmap! with { Connected = false };
                var wait = backoff.Next();
                output.Event("disconnected", new { reason = exception.Message, retryInMs = (int)wait.TotalMilliseconds },
                    $"disconnected: {exception.Message}; reconnecting in {wait.TotalSeconds:0.0} s");
                try
                {
                    await Task.Delay(wait, stopping);
                    // The gateway may have come back on another gRPC address.
                    var client = await ConnectOnceAsync(stopping);
                    await _clientGate.WaitAsync(stopping);
                    try
                    {
                        _client!.Dispose();
                        _client = client;
                    }
                    finally
                    {
                        _clientGate.Release();
                    }
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                catch (AgentFailure)
                {
                    // Still unreachable: the next round tries again.
                }
            }
            catch (AgentFailure failure) when (failure.Code == "invalid_token" && resumed && !everConnected && (!string.IsNullOrEmpty(options.AuthKey) || options.IdToken is not null))
            {
                // The saved node is gone (removed while this agent was down) or its token was replaced: register again.
                output.Event("expired", null, "the saved node's token no longer works; registering again");
                if (await RegisterAsync(stopping) is null)
                {
                    break;
                }

                resumed = false;
            }
            catch (AgentFailure failure) when (failure.Code == "invalid_token")
            {
                return NodeGone("The gateway no longer knows this node's token.");
            }
        }

        return null;
    }

    /// <summary>Logs the node out (within a few seconds); on success the state file is gone. <paramref name="agentExit"/>:
    /// because the agent exits with in-memory state (the gateway records it as the reason), not because it was asked.</summary>
    public async Task<LogoutOutcome> LogoutAsync(bool agentExit)
    {
        var nodeId = _netmap?.Self.Id ?? saved?.NodeId ?? "";
        using var deadline = new CancellationTokenSource(LogoutDeadline);
        try
        {
            await _client!.LogoutAsync(_nodeToken!, agentExit, deadline.Token);
            if (options.StateFile is { } path)
            {
                AgentState.Delete(path);
            }

            output.Event("logged_out", new { node = nodeId }, $"logged out: {_netmap?.Self.Name} ({nodeId})");
            return new LogoutOutcome(nodeId, null);
        }
        catch (Exception exception) when (exception is AgentFailure or OperationCanceledException)
        {
            var failure = exception as AgentFailure ?? AgentFailure.Unreachable($"The gateway did not answer within {LogoutDeadline.TotalSeconds:0} s.");
            output.Error("logout_failed", $"Logout failed ({failure.Message}); the node stays until its inactivity timeout or an admin removes it.");
            return new LogoutOutcome(nodeId, failure);
        }
    }

    public void Dispose() => _client?.Dispose();

    /// <summary>Registers with the auth key, retrying while the gateway cannot be reached, and saves the state.</summary>
    private async Task<Node?> RegisterAsync(CancellationToken stopping)
    {
        if (string.IsNullOrEmpty(options.AuthKey) && options.IdToken is null)
        {
            throw new AgentFailure("auth_key_required", "An auth key or an ID token is needed to register (--auth-key or EO_AUTH_KEY; --id-token-file, EO_ID_TOKEN or --id-token-github).", transient: false);
        }

        // Each attempt gets a fresh proof (the gateway accepts a proof's time once, and a retry may follow an attempt
        // that registered the node although its answer was lost) and a freshly read ID token.
        var response = await RetryAsync(async ct => await _client!.RegisterAsync(await RegisterRequestAsync(ct), ct), stopping);
        if (response is null)
        {
            return null;
        }

        _nodeToken = response.NodeToken;
        _reportedEndpoints = null;
        if (options.StateFile is { } path)
        {
            new AgentState(options.LoginServer.ToString(), Convert.ToBase64String(identity.PrivateKey), response.Node.Id, response.NodeToken) { CaFile = options.Trust.CaFile }.Save(path);
        }

        _netmap = NetmapSnapshot.Initial(response.Node);
        output.Registered(response.Node, resumed: false);
        return response.Node;
    }

    /// <summary>A registration of this node, with a proof of possession made now when the gateway's control key is
    /// known (gateways that publish none do not ask for one).</summary>
    private async Task<RegisterRequest> RegisterRequestAsync(CancellationToken cancellationToken)
    {
        var request = new RegisterRequest { NodeKey = identity.NodeKey, Hostname = options.Hostname, Ephemeral = options.Ephemeral };
        string credential;
        if (options.IdToken is { } source)
        {
            credential = request.IdToken = await source.GetAsync(cancellationToken);
            request.Tailnet = options.Tailnet ?? "";
        }
        else
        {
            credential = request.AuthKey = options.AuthKey!;
        }

        if (_controlKey is not null)
        {
            Protocol.RegistrationProof proof;
            try
            {
                proof = Protocol.RegistrationProof.Create(identity.PrivateKey, _controlKey,
                    new RegistrationFields(credential, identity.NodeKey, options.Hostname, options.Ephemeral), DateTimeOffset.UtcNow);
            }
            catch (ArgumentException exception)
            {
                throw new AgentFailure("invalid_control_key", exception.Message, transient: false);
            }

            request.Proof = new Protocol.V1.RegistrationProof { Timestamp = proof.Timestamp, Mac = Google.Protobuf.ByteString.CopyFrom(proof.Mac) };
        }

        return request;
    }

    /// <summary>Sends this node's endpoints when they differ from what the gateway has. A refusal of the set
    /// (<c>invalid_endpoints</c>) is reported once and not retried until the set changes; transient failures are
    /// the caller's to retry.</summary>
    private async Task ReportEndpointsAsync(CancellationToken cancellationToken)
    {
        if (options.ListenPort is not { } listenPort)
        {
            return; // no WireGuard listens: nothing to tell peers
        }

        await _clientGate.WaitAsync(cancellationToken);
        try
        {
            var endpoints = LocalEndpoints.Discover(listenPort);
            if (_reportedEndpoints is not null && endpoints.SequenceEqual(_reportedEndpoints))
            {
                return;
            }

            try
            {
                await _client!.SetEndpointsAsync(_nodeToken!, endpoints, cancellationToken);
                output.Event("endpoints", new { endpoints }, $"endpoints: {(endpoints.Length > 0 ? string.Join(", ", endpoints) : "none")}");
            }
            catch (AgentFailure failure) when (failure.Code == "invalid_endpoints")
            {
                output.Error(failure.Code, failure.Message);
            }

            _reportedEndpoints = endpoints;
        }
        finally
        {
            _clientGate.Release();
        }
    }

    /// <summary>Reports endpoint changes while the session follows its map: at once when the system says an address
    /// changed, and every <see cref="ControlSessionOptions.EndpointCheckInterval"/> in case it did not say.</summary>
    private async Task WatchEndpointsAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                await AddressChanges.WaitAsync(options.EndpointCheckInterval, cancellationToken);
                if (_reportedEndpoints is null || _netmap is not { Connected: true })
                {
                    continue; // the follow loop reports when it (re)connects
                }

                try
                {
                    await ReportEndpointsAsync(cancellationToken);
                }
                catch (AgentFailure)
                {
                    // Unreachable or refused for now: the next round, or the next reconnect, sends them.
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private int NodeGone(string message)
    {
        output.Error("node_gone", message);
        if (options.StateFile is { } path)
        {
            AgentState.Delete(path);
        }

        return ExitCodes.NodeGone;
    }

    /// <summary>The client for the chosen transport, after the login server's discovery document (where gRPC is, and
    /// the control key), retried within the connect timeout; null when stopped meanwhile.</summary>
    private async Task<IControlClient?> ConnectAsync(CancellationToken stopping)
    {
        var discovery = await RetryAsync(ct => HttpControlClient.DiscoverAsync(options.LoginServer, options.Trust, ct), stopping);
        return discovery is null ? null : ClientFor(discovery);
    }

    private async Task<IControlClient> ConnectOnceAsync(CancellationToken stopping) =>
        ClientFor(await HttpControlClient.DiscoverAsync(options.LoginServer, options.Trust, stopping));

    private IControlClient ClientFor(GatewayDiscovery discovery)
    {
        _controlKey = discovery.ControlKey;
        return options.Transport == AgentTransport.Http
            ? new HttpControlClient(options.LoginServer, options.Trust)
            : new GrpcControlClient(discovery.GrpcUrl ?? throw AgentFailure.Unreachable("The gateway named no gRPC endpoint."), options.Trust);
    }

    /// <summary>
    /// Retries transient failures until the connect timeout has passed, counted from the first attempt; an attempt
    /// still running at the deadline is cut short. Null when stopped meanwhile.
    /// </summary>
    private async Task<T?> RetryAsync<T>(Func<CancellationToken, Task<T>> call, CancellationToken stopping)
        where T : class
    {
        var within = options.ConnectTimeout;
        var clock = Stopwatch.StartNew();
        var backoff = new Backoff(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(2));
        string? reason = null;
        while (true)
        {
            var left = within - clock.Elapsed;
            if (left <= TimeSpan.Zero)
            {
                throw new AgentFailure("unreachable", $"The gateway at {options.LoginServer} could not be reached within {within.TotalSeconds:0.#} s: {reason ?? "no answer in time"}", transient: true);
            }

            using var attempt = CancellationTokenSource.CreateLinkedTokenSource(stopping);
            attempt.CancelAfter(left);
            try
            {
                return await call(attempt.Token);
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return null;
            }
            catch (OperationCanceledException)
            {
                // Cut at the deadline; an earlier attempt's reason says more.
                reason ??= "no answer in time";
            }
            catch (AgentFailure failure) when (failure.Transient)
            {
                reason = failure.Message;
            }

            // Waits are cut at the deadline, never skipped: the last check is at the deadline itself.
            var remaining = within - clock.Elapsed;
            var wait = backoff.Next();
            try
            {
                await Task.Delay(wait < remaining ? wait : remaining > TimeSpan.Zero ? remaining : TimeSpan.Zero, stopping);
            }
            catch (OperationCanceledException)
            {
                return null;
            }
        }
    }
}
