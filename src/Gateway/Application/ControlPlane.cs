using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Policy;
using EphemeralOrleans.Contracts.Validation;
using EphemeralOrleans.Gateway.Hosting;
using EphemeralOrleans.Gateway.Identity;
using EphemeralOrleans.Gateway.Telemetry;
using EphemeralOrleans.Protocol;
using Microsoft.Extensions.Options;

namespace EphemeralOrleans.Gateway.Application;

/// <summary>A registration as agents send it: with an auth key, or with an OIDC ID token (workload identity) for a
/// trust policy of <see cref="Tailnet"/> (default <c>-</c>).</summary>
public sealed record RegisterRequest(string? AuthKey, string? NodeKey, string? Hostname, bool Ephemeral, ProofRequest? Proof = null,
    string? IdToken = null, string? Tailnet = null);

/// <summary>A trust policy as operators write it (see <see cref="TrustPolicySpec"/>).</summary>
public sealed record TrustPolicyRequest(string? Issuer, string[]? Audiences, string? Subject, Dictionary<string, string>? Claims, string[]? Tags,
    bool NeedsApproval, string? Description);

/// <summary>A registration's proof of possession of its node key (see <see cref="RegistrationProof"/>): Unix
/// milliseconds and the MAC, base64.</summary>
public sealed record ProofRequest(long Timestamp, string? Mac);

/// <summary>A webhook endpoint as operators ask for it: the URL, the event types (none: all) and a description.</summary>
public sealed record CreateWebhookRequest(string? Url, string[]? Types, string? Description);

/// <summary>A key as operators ask for it.</summary>
public sealed record CreateKeyRequest(bool Reusable, bool Ephemeral, bool Preauthorized, string[]? Tags, long? ExpirySeconds, string? Description);

/// <summary>
/// The application layer: every rule of the agent and admin APIs, called by each transport. Refusals are thrown as
/// <see cref="ControlPlaneException"/>; the transports only translate.
/// </summary>
public sealed class ControlPlane(IGrainFactory grains, IOptions<GatewayOptions> options, ControlKey controlKey, IdSeal seal, IdTokenValidator idTokens,
    RateLimits limits, Map.GatewaySessionLease sessionLease, TimeProvider time)
{
    private const int MaxHostnameLength = 255;
    private const int MaxDescriptionLength = 512;
    private const int MaxIdTokenLength = 16 * 1024;
    private static readonly TimeSpan MaxExpiry = TimeSpan.FromDays(3650);

    private readonly SemaphoreSlim _registrations = new(options.Value.MaxConcurrentRegistrations);

    /// <summary>A tailnet name from a path segment or a request field: <c>-</c> (or nothing) is the default tailnet.</summary>
    public static string Tailnet(string? name) =>
        Identifiers.TryTailnet(string.IsNullOrEmpty(name) ? "-" : name, out var tailnet)
            ? tailnet
            : throw new ControlPlaneException(Failure.Invalid("invalid_tailnet", "The tailnet name must match [a-z0-9][a-z0-9.-]{0,62}, or be '-'."));

    /// <summary>Registers a device. <paramref name="nodeToken"/> is the bearer credential the call came with, if any:
    /// besides a proof, the node's current token lets its agent register the node again.</summary>
    public async Task<(NodeEntry Node, string NodeToken)> RegisterAsync(RegisterRequest request, string? nodeToken, CancellationToken cancellationToken)
    {
        if (!Identifiers.TryNodeKey(request.NodeKey, out var nodeKey))
        {
            throw new ControlPlaneException(Failure.Invalid("invalid_node_key", "nodeKey must be 'nodekey:' followed by 64 hex digits."));
        }

        var hostname = request.Hostname is { } given ? Identifiers.DisplayText(given.Trim())?.Trim() : null;
        if (string.IsNullOrEmpty(hostname) || hostname.Length > MaxHostnameLength)
        {
            throw new ControlPlaneException(Failure.Invalid("invalid_hostname", $"hostname must be 1 to {MaxHostnameLength} printable characters."));
        }

        string? keyId = null, secret = null;
        // A key id this cluster did not issue is refused here, before a grain is activated for it.
        if (request.IdToken is null && (!Identifiers.TryAuthKey(request.AuthKey, out keyId, out secret) || !await seal.MayBeKeyAsync(keyId)))
        {
            throw new ControlPlaneException(Failure.Unauthenticated("invalid_key", "The auth key is unknown or its secret is wrong."));
        }

        if (request.IdToken is { } idToken && (request.AuthKey is not null || idToken.Length is 0 or > MaxIdTokenLength))
        {
            throw new ControlPlaneException(Failure.Invalid("token_malformed", $"Give either an auth key or an ID token (a JWT of at most {MaxIdTokenLength} characters), not both."));
        }

        // Per key, wherever the registrations come from (per source is the limiter in front); a token's trust policy
        // is known only once it is validated, so tokens are limited per tailnet here.
        if (limits.RegistrationRefusal(keyId ?? $"tokens:{Tailnet(request.Tailnet)}") is { } throttled)
        {
            throw new ControlPlaneException(throttled);
        }

        // Checked before the key is redeemed: a proof that fails here costs the key no use. The credential it covers is
        // the auth key or the ID token, whichever the agent holds.
        var provenAt = request.Proof is { } proof
            ? await VerifyProofAsync(proof, nodeKey, new RegistrationFields(request.AuthKey ?? request.IdToken!, nodeKey, request.Hostname!, request.Ephemeral), cancellationToken)
            : (DateTimeOffset?)null;

        await _registrations.WaitAsync(cancellationToken);
        try
        {
            // One id for every attempt: a retried step that had completed (the key counted the use, the node was made)
            // is recognised, not repeated (see ClusterRetry).
            var requestId = Guid.NewGuid().ToString("N");
            var result = await ClusterRetry.RunAsync(async attempt =>
            {
                KeyGrant grant;
                if (request.IdToken is { } token)
                {
                    grant = await RedeemIdTokenAsync(token, Tailnet(request.Tailnet), nodeKey, cancellationToken);
                }
                else
                {
                    var redeemed = await grains.GetGrain<IAuthKeyGrain>(keyId!).Redeem(secret!, requestId);
                    grant = redeemed.Grant ?? throw Refused(redeemed.Failure!);
                }

                var grainKey = NodeIds.GrainKeyFor(grant.Tailnet, nodeKey);
                return await grains.GetGrain<INodeGrain>(grainKey).Register(new RegisterCommand(nodeKey, hostname, request.Ephemeral, grant)
                {
                    ProvenAt = provenAt,
                    NodeToken = nodeToken,
                    NewNodeId = await seal.NewNodeIdAsync(grainKey),
                    RequestId = requestId,
                    Attempt = attempt,
                });
            }, options.Value.ClusterRetryWindow, options.Value.ClusterAttemptTimeout, time, cancellationToken);
            if (result.Failure is { } failure)
            {
                throw Refused(failure);
            }

            GatewayMetrics.Registration("ok", request.IdToken is null ? "key" : "token");
            return (result.Node!, result.NodeToken!);
        }
        finally
        {
            _registrations.Release();
        }
    }

    /// <summary>
    /// What an OIDC ID token grants: the token must satisfy a trust policy of <paramref name="tailnet"/>
    /// (<see cref="IdTokenValidator"/>), and not have registered another node key (a token registers one node; the same
    /// node key may come back with it). Nodes so registered are always ephemeral.
    /// </summary>
    private async Task<KeyGrant> RedeemIdTokenAsync(string token, string tailnet, string nodeKey, CancellationToken cancellationToken)
    {
        var policies = await grains.GetGrain<ITailnetGrain>(tailnet).ListTrustPolicies();
        ValidatedIdToken validated;
        try
        {
            validated = await idTokens.ValidateAsync(token, policies, cancellationToken);
        }
        catch (ControlPlaneException refused)
        {
            GatewayMetrics.Registration(refused.Failure.Code, "token");
            throw;
        }

        if (!await grains.GetGrain<ITokenLedgerGrain>(0).Claim(validated.ReplayKey, nodeKey, validated.ExpiresAt))
        {
            GatewayMetrics.Registration("token_replayed", "token");
            throw new ControlPlaneException(Failure.Unauthenticated("token_replayed", "This ID token already registered another node; each token registers one."));
        }

        var policy = validated.Policy;
        return new KeyGrant(KeyGrant.TrustPolicyPrefix + policy.Id, tailnet, Ephemeral: true, Preauthorized: !policy.Spec.NeedsApproval, [.. policy.Spec.Tags], validated.Subject);
    }

    public async Task<TrustPolicy[]> ListTrustPoliciesAsync(string tailnet) => await grains.GetGrain<ITailnetGrain>(tailnet).ListTrustPolicies();

    public async Task<TrustPolicy> GetTrustPolicyAsync(string tailnet, string policyId) =>
        (await ListTrustPoliciesAsync(tailnet)).FirstOrDefault(p => p.Id == policyId)
        ?? throw new ControlPlaneException(Failure.NotFound("trust_policy_not_found", $"No trust policy '{policyId}' in tailnet '{tailnet}'."));

    /// <summary>Creates a trust policy (<paramref name="policyId"/> null) or replaces one.</summary>
    public async Task<TrustPolicy> PutTrustPolicyAsync(string tailnet, string? policyId, TrustPolicyRequest request)
    {
        var existing = policyId is null ? null : await GetTrustPolicyAsync(tailnet, policyId);
        var (spec, failure) = TrustPolicyRules.Normalize(request.Issuer, request.Audiences, request.Subject, request.Claims, request.Tags, request.NeedsApproval, request.Description);
        if (failure is not null)
        {
            throw new ControlPlaneException(failure);
        }

        if (spec!.Tags.Length > 0 && await PolicyAsync(tailnet) is var acl && spec.Tags.FirstOrDefault(t => !acl.Allows(t)) is { } unowned)
        {
            throw new ControlPlaneException(Failure.Invalid("tag_not_owned", $"'{unowned}' is not in the policy's tagOwners."));
        }

        await grains.GetGrain<ITailnetDirectoryGrain>(ITailnetDirectoryGrain.Key).Add(tailnet);
        var now = time.GetUtcNow();
        var policy = existing is null
            ? new TrustPolicy("tp" + Secrets.Base62(12), tailnet, spec, now, now)
            : existing with { Spec = spec, UpdatedAt = now };
        await grains.GetGrain<ITailnetGrain>(tailnet).PutTrustPolicy(policy);
        return policy;
    }

    /// <summary>Deletes a trust policy: no new registrations through it; nodes it registered stay.</summary>
    public async Task DeleteTrustPolicyAsync(string tailnet, string policyId)
    {
        if (!await grains.GetGrain<ITailnetGrain>(tailnet).DeleteTrustPolicy(policyId))
        {
            throw new ControlPlaneException(Failure.NotFound("trust_policy_not_found", $"No trust policy '{policyId}' in tailnet '{tailnet}'."));
        }
    }

    /// <summary>The gateways' control key, which registration proofs are made with: <c>controlkey:&lt;64 hex&gt;</c>.</summary>
    public Task<string> ControlKeyAsync(CancellationToken cancellationToken) => controlKey.PublicTextAsync(cancellationToken);

    /// <summary>The proof's time once its MAC and clock window check out; refuses otherwise. Whether the time is later
    /// than the node's last accepted proof (no replay) is the node grain's check.</summary>
    private async Task<DateTimeOffset> VerifyProofAsync(ProofRequest proof, string nodeKey, RegistrationFields fields, CancellationToken cancellationToken)
    {
        var mac = new byte[RegistrationProof.MacLength];
        if (proof.Mac is null || !Convert.TryFromBase64String(proof.Mac, mac, out var length) || length != RegistrationProof.MacLength
            || proof.Timestamp is < 0 or > 253402300799999)
        {
            throw Refused(Failure.Invalid("malformed_proof", "proof must be {\"timestamp\": Unix milliseconds, \"mac\": 32 bytes in base64}."));
        }

        var provenAt = DateTimeOffset.FromUnixTimeMilliseconds(proof.Timestamp);
        var skew = provenAt - time.GetUtcNow();
        var window = options.Value.ProofClockWindow;
        if (skew.Duration() > window)
        {
            throw Refused(Failure.Unauthenticated("proof_clock_skew",
                $"The proof's timestamp is {skew.Duration().TotalSeconds:0} s {(skew > TimeSpan.Zero ? "ahead of" : "behind")} the gateway's clock; at most {window.TotalSeconds:0} s is accepted."));
        }

        KeyText.TryParse(nodeKey, KeyText.NodeKeyPrefix, out var nodePublicKey);
        if (!new RegistrationProof(proof.Timestamp, mac).Verify(await controlKey.PrivateKeyAsync(cancellationToken), nodePublicKey!, fields))
        {
            throw Refused(Failure.Unauthenticated("invalid_proof", "The proof does not show possession of this node key's private key (made for another gateway, key or request?)."));
        }

        return provenAt;
    }

    /// <summary>Authenticates a node token and opens a map session for <paramref name="streamId"/>; the slot counts the
    /// stream among the node's (<see cref="RateLimitOptions.MaxStreamsPerNode"/>): dispose it when the stream ends.</summary>
    public async Task<(INodeGrain Grain, SessionInfo Session, IDisposable Slot)> OpenSessionAsync(string? token, string streamId)
    {
        if (await NodeOfTokenAsync(token) is var (nodeId, secret, grainKey))
        {
            var grain = grains.GetGrain<INodeGrain>(grainKey);
            sessionLease.Add(nodeId, streamId);
            SessionInfo? session;
            try
            {
                session = await grain.OpenSession(nodeId, secret, streamId, sessionLease.Id);
            }
            catch
            {
                // The call may still have opened the session (it timed out, not failed): close it, or it would outlive
                // the stream that never started.
                sessionLease.Remove(streamId);
                _ = grain.CloseSession(streamId, sessionLease.Id).ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
                throw;
            }

            if (session is not null)
            {
                if (limits.OpenStream(nodeId) is { } slot)
                {
                    return (grain, session, slot);
                }

                sessionLease.Remove(streamId);
                await grain.CloseSession(streamId, sessionLease.Id);
                throw new ControlPlaneException(Failure.Throttled("too_many_streams",
                    "This node already has its maximum of map streams open on this gateway; close one first.", TimeSpan.FromSeconds(1)));
            }

            sessionLease.Remove(streamId);
        }

        throw InvalidToken();
    }

    /// <summary>A node token's node id, secret and grain key; null when it is malformed or names a node id this
    /// cluster did not issue (refused before a grain is activated for it).</summary>
    private async Task<(string NodeId, string Secret, string GrainKey)?> NodeOfTokenAsync(string? token) =>
        NodeIds.TryToken(token, out var nodeId, out var secret) && NodeIds.TryGrainKey(nodeId, out var grainKey) && await seal.MayBeNodeAsync(nodeId)
            ? (nodeId, secret, grainKey)
            : null;

    /// <summary>The node a token belongs to (for the relay); refused like any bad token.</summary>
    public async Task<NodeEntry> AuthenticateAsync(string? token)
    {
        if (await NodeOfTokenAsync(token) is var (nodeId, secret, grainKey)
            && await grains.GetGrain<INodeGrain>(grainKey).Authenticate(nodeId, secret) is { } node)
        {
            return node;
        }

        throw InvalidToken();
    }

    /// <summary>Replaces the UDP endpoints of the token's node; peers that see it get them in their next delta.</summary>
    public async Task<NodeEntry> SetEndpointsAsync(string? token, IReadOnlyCollection<string>? endpoints)
    {
        if (await NodeOfTokenAsync(token) is not var (nodeId, secret, grainKey))
        {
            throw InvalidToken();
        }

        if (!Endpoints.TryParse(endpoints, out var parsed, out var error))
        {
            throw new ControlPlaneException(Failure.Invalid("invalid_endpoints", error));
        }

        return await grains.GetGrain<INodeGrain>(grainKey).SetEndpoints(nodeId, secret, parsed) ?? throw InvalidToken();
    }

    /// <summary>Logs a node out; <paramref name="reason"/> is "logout" (or empty) or "agent-exit".</summary>
    public async Task LogoutAsync(string? token, string? reason)
    {
        var agentExit = reason switch
        {
            null or "" or "logout" => false,
            "agent-exit" => true,
            _ => throw new ControlPlaneException(Failure.Invalid("invalid_reason", "A logout's reason is 'logout' or 'agent-exit'.")),
        };
        if (await NodeOfTokenAsync(token) is not var (nodeId, secret, grainKey)
            || !await grains.GetGrain<INodeGrain>(grainKey).Logout(nodeId, secret, agentExit))
        {
            throw InvalidToken();
        }
    }

    public async Task<CreatedAuthKey> CreateKeyAsync(string tailnet, CreateKeyRequest request)
    {
        var tags = request.Tags ?? [];
        if (tags.FirstOrDefault(t => !Identifiers.IsTag(t)) is { } badTag)
        {
            throw new ControlPlaneException(Failure.Invalid("invalid_tag", $"'{badTag}' is not a tag (tag:[a-z0-9-]+)."));
        }

        // Compared as numbers first: TimeSpan.FromSeconds overflows (a 500) long before a long does.
        if (request.ExpirySeconds is { } seconds && (seconds <= 0 || seconds > MaxExpiry.TotalSeconds))
        {
            throw new ControlPlaneException(Failure.Invalid("invalid_expiry", "expirySeconds must be positive and at most ten years."));
        }

        var description = request.Description is { } text ? Identifiers.DisplayText(text) : null;
        if (request.Description is not null && (description is null || description.Length > MaxDescriptionLength))
        {
            throw new ControlPlaneException(Failure.Invalid("invalid_description", $"description must be at most {MaxDescriptionLength} printable characters."));
        }

        if (tags.Length > 0 && await PolicyAsync(tailnet) is var policy && tags.FirstOrDefault(t => !policy.Allows(t)) is { } unowned)
        {
            throw new ControlPlaneException(Failure.Invalid("tag_not_owned", $"'{unowned}' is not in the policy's tagOwners."));
        }

        await grains.GetGrain<ITailnetDirectoryGrain>(ITailnetDirectoryGrain.Key).Add(tailnet);
        var spec = new AuthKeySpec(request.Reusable, request.Ephemeral, request.Preauthorized, tags.Distinct().ToArray(),
            request.ExpirySeconds is { } s ? TimeSpan.FromSeconds(s) : null, description);
        while (true)
        {
            // Listed first, so a crash between the two steps leaves at worst an id that lists nothing.
            var keyId = await seal.NewKeyIdAsync();
            await grains.GetGrain<ITailnetGrain>(tailnet).AddKey(keyId);
            if (await grains.GetGrain<IAuthKeyGrain>(keyId).Create(tailnet, spec) is { } created)
            {
                return created;
            }
        }
    }

    public async Task<CreatedWebhook> CreateWebhookAsync(string tailnet, CreateWebhookRequest request)
    {
        if (WebhookUrls.Problem(request.Url) is var (code, detail))
        {
            throw new ControlPlaneException(Failure.Invalid(code, detail));
        }

        var types = request.Types ?? [];
        if (types.FirstOrDefault(t => !EventTypes.IsFilter(t)) is { } unknown)
        {
            throw new ControlPlaneException(Failure.Invalid("unknown_event_type",
                $"'{Identifiers.DisplayText(unknown) ?? "?"}' is not an event type; one of {string.Join(", ", EventTypes.All.Order(StringComparer.Ordinal))}, or a family such as 'node.*'."));
        }

        var description = request.Description is { } text ? Identifiers.DisplayText(text) : null;
        if (request.Description is not null && (description is null || description.Length > MaxDescriptionLength))
        {
            throw new ControlPlaneException(Failure.Invalid("invalid_description", $"description must be at most {MaxDescriptionLength} printable characters."));
        }

        return await grains.GetGrain<IWebhookGrain>(tailnet).Create(new WebhookSpec(request.Url!, [.. types.Distinct()], description))
            ?? throw new ControlPlaneException(Failure.Conflict("too_many_webhooks", $"Tailnet '{tailnet}' has its maximum number of webhook endpoints (Webhooks:MaxEndpoints)."));
    }

    public Task<WebhookInfo[]> ListWebhooksAsync(string tailnet) => grains.GetGrain<IWebhookGrain>(tailnet).List();

    public async Task<WebhookInfo> GetWebhookAsync(string tailnet, string id) =>
        await grains.GetGrain<IWebhookGrain>(tailnet).Get(id) ?? throw WebhookNotFound(tailnet, id);

    public async Task<WebhookAttempt[]> ListWebhookAttemptsAsync(string tailnet, string id) =>
        await grains.GetGrain<IWebhookGrain>(tailnet).Attempts(id) ?? throw WebhookNotFound(tailnet, id);

    public async Task DeleteWebhookAsync(string tailnet, string id)
    {
        if (!await grains.GetGrain<IWebhookGrain>(tailnet).Delete(id))
        {
            throw WebhookNotFound(tailnet, id);
        }
    }

    public async Task<WebhookInfo> ResumeWebhookAsync(string tailnet, string id) =>
        await grains.GetGrain<IWebhookGrain>(tailnet).Resume(id) ?? throw WebhookNotFound(tailnet, id);

    private static ControlPlaneException WebhookNotFound(string tailnet, string id) =>
        new(Failure.NotFound("webhook_not_found", $"No webhook '{Identifiers.DisplayText(id) ?? "?"}' in tailnet '{tailnet}'."));

    public const int DefaultEventLimit = 100;
    public const int MaxEventLimit = 1000;

    /// <summary>A page of the tailnet's audit log after the cursor <paramref name="since"/> (an event id; empty: from the
    /// oldest kept), and the cursor to continue from (the last id returned, or <paramref name="since"/> when none).</summary>
    public async Task<(AuditEvent[] Events, long Next)> ListEventsAsync(string tailnet, string? since, string? type, string? node, int? limit, bool newest = false)
    {
        long after = 0;
        if (!string.IsNullOrEmpty(since) && (!long.TryParse(since, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out after) || after < 0))
        {
            throw new ControlPlaneException(Failure.Invalid("invalid_cursor", "'since' is the id of an event (a non-negative integer), as 'next' returned it."));
        }

        if (limit is < 1 or > MaxEventLimit)
        {
            throw new ControlPlaneException(Failure.Invalid("invalid_limit", $"'limit' is 1 to {MaxEventLimit}."));
        }

        if (!string.IsNullOrEmpty(type) && !EventTypes.IsFilter(type))
        {
            throw new ControlPlaneException(Failure.Invalid("unknown_event_type",
                $"Unknown event type; one of {string.Join(", ", EventTypes.All.Order(StringComparer.Ordinal))}, or a family such as 'node.*'."));
        }

        if (!string.IsNullOrEmpty(node) && !NodeIds.TryGrainKey(node, out _))
        {
            throw new ControlPlaneException(Failure.Invalid("invalid_node_id", "'node' is a node id."));
        }

        var query = new EventQuery(after, limit ?? DefaultEventLimit, string.IsNullOrEmpty(type) ? null : type, string.IsNullOrEmpty(node) ? null : node, newest);
        var events = await grains.GetGrain<IEventLogGrain>(tailnet).Read(query);
        return (events, events.Length > 0 ? events.Max(e => e.Id) : after);
    }

    /// <summary>Every tailnet that has had a key, and the default one.</summary>
    public Task<string[]> ListTailnetsAsync() => grains.ListTailnetsAsync();

    public async Task<AuthKeyInfo[]> ListKeysAsync(string tailnet)
    {
        var ids = await grains.GetGrain<ITailnetGrain>(tailnet).ListKeyIds();
        var keys = await Task.WhenAll(ids.Select(id => grains.GetGrain<IAuthKeyGrain>(id).Describe()));
        return keys.OfType<AuthKeyInfo>().Where(k => k.Tailnet == tailnet).OrderBy(k => k.Created).ToArray();
    }

    public async Task<AuthKeyInfo> GetKeyAsync(string tailnet, string keyId) =>
        IsKeyId(keyId) && await grains.GetGrain<IAuthKeyGrain>(keyId).Describe() is { } key && key.Tailnet == tailnet
            ? key
            : throw new ControlPlaneException(Failure.NotFound("key_not_found", $"No auth key '{keyId}' in tailnet '{tailnet}'."));

    public async Task RevokeKeyAsync(string tailnet, string keyId)
    {
        await GetKeyAsync(tailnet, keyId);
        await grains.GetGrain<IAuthKeyGrain>(keyId).Revoke();
    }

    public async Task<NodeEntry[]> ListNodesAsync(string tailnet)
    {
        var snapshot = await grains.GetGrain<ITailnetGrain>(tailnet).GetSnapshot();
        return snapshot.Nodes.OrderBy(n => n.Record.Created).ThenBy(n => n.Record.Name, StringComparer.Ordinal).ToArray();
    }

    public async Task<NodeEntry> GetNodeAsync(string tailnet, string nodeId) =>
        await NodeGrainAsync(tailnet, nodeId) is var (_, entry) ? entry : throw NodeNotFound(tailnet, nodeId);

    /// <summary>Removes a node at once; returns it as it was.</summary>
    public async Task<NodeEntry> DeleteNodeAsync(string tailnet, string nodeId)
    {
        var (grain, entry) = await NodeGrainAsync(tailnet, nodeId) ?? throw NodeNotFound(tailnet, nodeId);
        return await grain.Delete(nodeId) ? entry : throw NodeNotFound(tailnet, nodeId);
    }

    /// <summary>Ends a node's credentials as a logout would (an ephemeral node is removed); returns it as it was.</summary>
    public async Task<NodeEntry> ExpireNodeAsync(string tailnet, string nodeId)
    {
        var (grain, entry) = await NodeGrainAsync(tailnet, nodeId) ?? throw NodeNotFound(tailnet, nodeId);
        return await grain.Expire(nodeId) ? entry : throw NodeNotFound(tailnet, nodeId);
    }

    /// <summary>Renames a node; the name must be free in the tailnet.</summary>
    public async Task<NodeEntry> RenameNodeAsync(string tailnet, string nodeId, string? name)
    {
        if (!Identifiers.IsNodeName(name))
        {
            throw new ControlPlaneException(Failure.Invalid("invalid_name", "A node name is 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'."));
        }

        var (grain, _) = await NodeGrainAsync(tailnet, nodeId) ?? throw NodeNotFound(tailnet, nodeId);
        var result = await grain.Rename(nodeId, name!) ?? throw NodeNotFound(tailnet, nodeId);
        return result.Outcome switch
        {
            RenameOutcome.Renamed => result.Node,
            RenameOutcome.Taken => throw new ControlPlaneException(Failure.Conflict("name_taken", $"Another node in the tailnet is named '{name}'.")),
            _ => throw NodeNotFound(tailnet, nodeId),
        };
    }

    public async Task<NodeEntry> ApproveNodeAsync(string tailnet, string nodeId)
    {
        var (grain, _) = await NodeGrainAsync(tailnet, nodeId) ?? throw NodeNotFound(tailnet, nodeId);
        return await grain.Approve(nodeId) ?? throw NodeNotFound(tailnet, nodeId);
    }

    /// <summary>The tailnet's policy as JSON: the stored one, or the allow-all policy when none was set.</summary>
    public async Task<string> GetPolicyAsync(string tailnet) => (await PolicyAsync(tailnet)).Json;

    /// <summary>Validates and stores a policy; an invalid one is refused naming the bad entry, and the old one stays.</summary>
    public async Task<string> SetPolicyAsync(string tailnet, string policyJson)
    {
        PolicyDocument policy;
        try
        {
            policy = PolicyDocument.Parse(policyJson);
        }
        catch (PolicyException exception)
        {
            throw new ControlPlaneException(Failure.Invalid("invalid_policy", exception.Message));
        }

        await grains.GetGrain<ITailnetGrain>(tailnet).SetPolicy(policy.Json);
        return policy.Json;
    }

    public Task<TailnetSettings> GetSettingsAsync(string tailnet) => grains.GetGrain<ITailnetGrain>(tailnet).GetSettings();

    public Task<TailnetSettings> UpdateSettingsAsync(string tailnet, bool? deviceApproval) =>
        grains.GetGrain<ITailnetGrain>(tailnet).UpdateSettings(deviceApproval);

    private async Task<(INodeGrain Grain, NodeEntry Entry)?> NodeGrainAsync(string tailnet, string nodeId)
    {
        if (!NodeIds.TryGrainKey(nodeId, out var grainKey))
        {
            return null;
        }

        var grain = grains.GetGrain<INodeGrain>(grainKey);
        return await grain.GetEntry(nodeId) is { } entry && entry.Record.Tailnet == tailnet ? (grain, entry) : null;
    }

    private async Task<PolicyDocument> PolicyAsync(string tailnet) =>
        await grains.GetGrain<ITailnetGrain>(tailnet).GetPolicy() is { } json ? PolicyDocument.ParseStored(json) : PolicyDocument.AllowAll;

    private static bool IsKeyId(string keyId) => keyId.Length is > 0 and <= 64 && keyId.All(char.IsAsciiLetterOrDigit);

    /// <summary>A refused registration, counted by its problem code.</summary>
    private static ControlPlaneException Refused(Failure failure)
    {
        GatewayMetrics.Registration(failure.Code);
        return new ControlPlaneException(failure);
    }

    private static ControlPlaneException NodeNotFound(string tailnet, string nodeId) =>
        new(Failure.NotFound("node_not_found", $"No node '{nodeId}' in tailnet '{tailnet}'."));

    private static ControlPlaneException InvalidToken() =>
        new(Failure.Unauthenticated("invalid_token", "The node token is missing, unknown or no longer valid."));
}
