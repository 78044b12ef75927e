using System.Runtime.InteropServices;
using EphemeralOrleans.Agent.Control;
using EphemeralOrleans.Protocol.V1;

namespace EphemeralOrleans.Agent;

public enum AgentTransport
{
    Grpc,
    Http,
}

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
    TimeSpan StreamTimeout)
{
    public const string MemoryState = "mem:";

    /// <summary><c>--state mem:</c>: nothing on disk, the node is ephemeral and goes when the agent exits.</summary>
    public bool InMemory => State == MemoryState;
}

/// <summary>
/// <c>up</c>: registers (or resumes the node in the state file), follows the netmap with reconnects, and on SIGINT or
/// SIGTERM with in-memory state logs out so that the node is removed at once.
/// </summary>
public sealed class UpCommand(UpOptions options)
{
    private static readonly TimeSpan LogoutDeadline = TimeSpan.FromSeconds(4);
    private readonly AgentOutput _output = new(options.Json);
    private readonly CancellationTokenSource _stopping = new();
    private IControlClient? _client;

    /// <summary>The gateways' control key from discovery; registrations carry a proof made with it.</summary>
    private byte[]? _controlKey;
    private Netmap? _netmap;
    private string? _nodeToken;
    private bool _logoutRequested;

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
            _output.Error(failure.Code, failure.Message);
            return failure.ExitCode;
        }
        finally
        {
            _client?.Dispose();
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

        var identity = saved is null ? NodeIdentity.Generate() : NodeIdentity.FromPrivateKey(Convert.FromBase64String(saved.PrivateKey));
        _client = await ConnectAsync(_stopping.Token);
        if (_client is null)
        {
            return Stopped();
        }

        Node self;
        if (saved is not null)
        {
            _nodeToken = saved.NodeToken;
            self = new Node { Id = saved.NodeId, Name = options.Hostname };
        }
        else if (await RegisterAsync(identity) is { } registered)
        {
            self = registered;
        }
        else
        {
            return Stopped();
        }

        _netmap = new Netmap(self);
        using var localApiStop = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        var localApi = await LocalApi.StartAsync(options.Socket, HandleLocalAsync, localApiStop.Token);
        try
        {
            var result = await FollowMapAsync(identity, resumed: saved is not null);
            if (result is { } exitCode)
            {
                return exitCode;
            }

            // Stopped by a signal or by `logout`.
            if (options.InMemory || _logoutRequested)
            {
                return await LogoutAsync();
            }

            return Stopped();
        }
        finally
        {
            await localApiStop.CancelAsync();
            await localApi;
        }
    }

    /// <summary>Registers with the auth key, retrying while the gateway cannot be reached, and saves the state.</summary>
    private async Task<Node?> RegisterAsync(NodeIdentity identity)
    {
        if (string.IsNullOrEmpty(options.AuthKey))
        {
            throw new AgentFailure("auth_key_required", "An auth key is needed to register (--auth-key or EO_AUTH_KEY).", transient: false);
        }

        // Each attempt gets a fresh proof: the gateway accepts a proof's time once, and a retry may follow an attempt
        // that registered the node although its answer was lost.
        var response = await RetryAsync(ct => _client!.RegisterAsync(identity.RegisterRequest(options.AuthKey, options.Hostname, options.InMemory, _controlKey), ct),
            options.ConnectTimeout, _stopping.Token);
        if (response is null)
        {
            return null;
        }

        _nodeToken = response.NodeToken;
        if (!options.InMemory)
        {
            new AgentState(options.LoginServer.ToString(), Convert.ToBase64String(identity.PrivateKey), response.Node.Id, response.NodeToken)
                .Save(options.State);
        }

        _output.Registered(response.Node, resumed: false);
        return response.Node;
    }

    /// <summary>Follows the map until stopped (null) or until the node is gone (an exit code). Reconnects with capped
    /// exponential backoff and jitter, keeping the node and its token.</summary>
    private async Task<int?> FollowMapAsync(NodeIdentity identity, bool resumed)
    {
        var backoff = new Backoff(TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(5));
        var everConnected = false;
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                using var silence = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
                silence.CancelAfter(options.StreamTimeout);
                await foreach (var message in _client!.MapAsync(_nodeToken!, silence.Token))
                {
                    silence.CancelAfter(options.StreamTimeout);
                    _netmap!.Apply(message);
                    switch (message.MessageCase)
                    {
                        case MapResponse.MessageOneofCase.Full:
                            if (!everConnected && resumed)
                            {
                                _output.Registered(_netmap.Self, resumed: true);
                            }

                            everConnected = true;
                            backoff.Reset();
                            _output.Full(_netmap);
                            break;
                        case MapResponse.MessageOneofCase.Delta:
                            _output.Delta(message.Delta);
                            break;
                    }
                }

                if (_stopping.IsCancellationRequested)
                {
                    break;
                }

                // The gateway ended the stream: the node was removed, logged out, or re-registered elsewhere.
                return NodeGone("The node was removed, logged out or re-registered; its stream ended.");
            }
            catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
            {
                break;
            }
            catch (Exception exception) when (exception is OperationCanceledException or AgentFailure { Transient: true })
            {
                _netmap!.Disconnected();
                var wait = backoff.Next();
                _output.Event("disconnected", new { reason = exception.Message, retryInMs = (int)wait.TotalMilliseconds },
                    $"disconnected: {exception.Message}; reconnecting in {wait.TotalSeconds:0.0} s");
                try
                {
                    await Task.Delay(wait, _stopping.Token);
                    // The gateway may have come back on another gRPC address.
                    var client = await ConnectAsync(_stopping.Token, once: true);
                    if (client is not null)
                    {
                        _client!.Dispose();
                        _client = client;
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
            catch (AgentFailure failure) when (failure.Code == "invalid_token" && resumed && !everConnected && !string.IsNullOrEmpty(options.AuthKey))
            {
                // The saved node is gone (removed while this agent was down): join again as a new node.
                _output.Event("expired", null, "the saved node no longer exists; registering again");
                if (await RegisterAsync(identity) is not { } node)
                {
                    break;
                }

                _netmap = new Netmap(node);
                resumed = false;
            }
            catch (AgentFailure failure) when (failure.Code == "invalid_token")
            {
                return NodeGone("The gateway no longer knows this node's token.");
            }
        }

        return null;
    }

    private int NodeGone(string message)
    {
        _output.Error("node_gone", message);
        if (!options.InMemory)
        {
            AgentState.Delete(options.State);
        }

        return ExitCodes.NodeGone;
    }

    private async Task<int> LogoutAsync()
    {
        using var deadline = new CancellationTokenSource(LogoutDeadline);
        try
        {
            await _client!.LogoutAsync(_nodeToken!, deadline.Token);
            if (!options.InMemory)
            {
                AgentState.Delete(options.State);
            }

            _output.Event("logged_out", new { node = _netmap!.Self.Id }, $"logged out: {_netmap.Self.Name} ({_netmap.Self.Id})");
            return ExitCodes.Ok;
        }
        catch (Exception exception) when (exception is AgentFailure or OperationCanceledException)
        {
            _output.Error("logout_failed", $"Logout failed ({exception.Message}); the node goes after the inactivity timeout.");
            return ExitCodes.GatewayUnreachable;
        }
    }

    private int Stopped()
    {
        _output.Event("stopped", null, "stopped");
        return ExitCodes.Ok;
    }

    private async Task<object> HandleLocalAsync(string request)
    {
        var netmap = _netmap!;
        switch (request)
        {
            case "status":
                return netmap.Status(options.LoginServer.ToString());
            case "netmap":
                return netmap.Map();
            case "logout":
                _logoutRequested = true;
                await _stopping.CancelAsync();
                return new { loggingOut = netmap.Self.Id };
            default:
                return new { error = $"unknown request '{request}'" };
        }
    }

    /// <summary>The client for the chosen transport, after asking the login server for its discovery document (where
    /// gRPC is, and the control key).</summary>
    private async Task<IControlClient?> ConnectAsync(CancellationToken cancellationToken, bool once = false)
    {
        var discovery = once
            ? await HttpControlClient.DiscoverAsync(options.LoginServer, cancellationToken)
            : await RetryAsync(ct => HttpControlClient.DiscoverAsync(options.LoginServer, ct), options.ConnectTimeout, cancellationToken);
        if (discovery is null)
        {
            return null;
        }

        _controlKey = discovery.ControlKey;
        if (options.Transport == AgentTransport.Http)
        {
            return new HttpControlClient(options.LoginServer);
        }

        return new GrpcControlClient(discovery.GrpcUrl ?? throw AgentFailure.Unreachable("The gateway named no gRPC endpoint."));
    }

    /// <summary>Retries transient failures until <paramref name="within"/> has passed; null when stopped meanwhile.</summary>
    private async Task<T?> RetryAsync<T>(Func<CancellationToken, Task<T>> call, TimeSpan within, CancellationToken cancellationToken)
        where T : class
    {
        var backoff = new Backoff(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(2));
        var deadline = DateTime.UtcNow + within;
        while (true)
        {
            try
            {
                return await call(cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return null;
            }
            catch (AgentFailure failure) when (failure.Transient)
            {
                var wait = backoff.Next();
                if (DateTime.UtcNow + wait > deadline)
                {
                    throw new AgentFailure("unreachable", $"The gateway at {options.LoginServer} could not be reached within {within.TotalSeconds:0} s: {failure.Message}", transient: true);
                }

                try
                {
                    await Task.Delay(wait, cancellationToken);
                }
                catch (OperationCanceledException)
                {
                    return null;
                }
            }
        }
    }
}

/// <summary>Capped exponential backoff with jitter: each wait is between half and all of the current ceiling.</summary>
public sealed class Backoff(TimeSpan initial, TimeSpan cap)
{
    private int _attempt;

    public TimeSpan Next()
    {
        var ceiling = Math.Min(cap.TotalMilliseconds, initial.TotalMilliseconds * Math.Pow(2, Math.Min(_attempt++, 20)));
        return TimeSpan.FromMilliseconds(ceiling / 2 + Random.Shared.NextDouble() * ceiling / 2);
    }

    public void Reset() => _attempt = 0;
}
