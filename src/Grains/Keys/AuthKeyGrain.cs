using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Validation;
using EphemeralOrleans.Grains.Common;
using EphemeralOrleans.Grains.Events;
using Microsoft.Extensions.Logging;
using Orleans.Concurrency;

namespace EphemeralOrleans.Grains.Keys;

[GenerateSerializer, Alias("eo.AuthKeyState")]
public sealed class AuthKeyState
{
    [Id(0)] public string? Tailnet { get; set; }
    [Id(1)] public byte[]? SecretHash { get; set; }
    [Id(2)] public bool Reusable { get; set; }
    [Id(3)] public bool Ephemeral { get; set; }
    [Id(4)] public bool Preauthorized { get; set; }
    [Id(5)] public string[] Tags { get; set; } = [];
    [Id(6)] public DateTimeOffset Created { get; set; }
    [Id(7)] public DateTimeOffset? Expires { get; set; }
    [Id(8)] public string? Description { get; set; }
    [Id(9)] public bool Revoked { get; set; }
    [Id(10)] public int Uses { get; set; }

    /// <summary>Whether <c>key.expired</c> was recorded (at the first use refused for expiry).</summary>
    [Id(11)] public bool ExpiryRecorded { get; set; }

    /// <summary>The gateways' request ids of the latest redemptions (at most <see cref="AuthKeyGrain.RememberedRedemptions"/>),
    /// so that a registration retried after a silo failure is not counted twice.</summary>
    [Id(12)] public string[] RecentRedemptions { get; set; } = [];

    public AuthKeyState Copy() => (AuthKeyState)MemberwiseClone();
}

/// <summary>
/// An auth key. Each redemption is checked and counted within one turn, so racing registrations see each other and a
/// single-use key is granted once; the grain is reentrant so that the writes of a fleet sharing a reusable key are
/// group-committed instead of queued one by one. A caller is answered once its use is durable.
/// </summary>
[Reentrant]
public sealed partial class AuthKeyGrain : Grain, IAuthKeyGrain
{
    // 32 characters of [A-Za-z0-9]: about 190 random bits.
    private const int SecretLength = 32;

    /// <summary>Redemption ids kept: far more than the registrations a gateway retries at once for one key.</summary>
    internal const int RememberedRedemptions = 256;

    private readonly IPersistentState<AuthKeyState> _key;
    private readonly AuditLog _auditLog;
    private readonly TimeProvider _time;
    private readonly ILogger<AuthKeyGrain> _logger;
    private readonly GroupCommit _commit;

    /// <summary>The state the grain works on; <c>_key.State</c> holds the copy being written.</summary>
    private AuthKeyState _live = new();

    public AuthKeyGrain(
        [PersistentState("authkey", StorageNames.State)] IPersistentState<AuthKeyState> key,
        AuditLog auditLog,
        TimeProvider time,
        ILogger<AuthKeyGrain> logger)
    {
        _key = key;
        _auditLog = auditLog;
        _time = time;
        _logger = logger;
        // Storage serializes the state after the write has started: it gets a copy, never the state being changed.
        _commit = new GroupCommit(() =>
        {
            _key.State = _live.Copy();
            return _key.WriteStateAsync();
        });
    }

    private AuthKeyState State => _live;

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _live = _key.State;
        return Task.CompletedTask;
    }

    private string Id => this.GetPrimaryKeyString();

    public async Task<CreatedAuthKey?> Create(string tailnet, AuthKeySpec spec)
    {
        if (State.Tailnet is not null)
        {
            return null;
        }

        var secret = Secrets.Base62(SecretLength);
        var now = _time.GetUtcNow();
        _live = new AuthKeyState
        {
            Tailnet = tailnet,
            SecretHash = Secrets.Hash(secret),
            Reusable = spec.Reusable,
            Ephemeral = spec.Ephemeral,
            Preauthorized = spec.Preauthorized,
            Tags = spec.Tags,
            Created = now,
            Expires = spec.Expiry is { } expiry ? now + expiry : null,
            Description = spec.Description,
        };
        await _commit.Request();
        LogCreated(Id, tailnet, spec.Reusable, spec.Ephemeral);
        await RecordAsync(EventTypes.KeyCreated, new
        {
            reusable = spec.Reusable, ephemeral = spec.Ephemeral, preauthorized = spec.Preauthorized, tags = spec.Tags,
            expires = _live.Expires, description = spec.Description,
        });
        return new CreatedAuthKey(Info(), Identifiers.FormatAuthKey(Id, secret));
    }

    public async Task<RedeemResult> Redeem(string secret, string? requestId = null)
    {
        var state = State;
        // The secret is checked before anything about the key is revealed.
        if (state.Tailnet is null || !Secrets.Matches(secret, state.SecretHash))
        {
            return Refuse(Failure.Unauthenticated("invalid_key", "The auth key is unknown or its secret is wrong."));
        }

        if (state.Revoked)
        {
            return Refuse(Failure.Forbidden("key_revoked", "The auth key has been revoked."));
        }

        if (requestId is not null && state.RecentRedemptions.Contains(requestId))
        {
            // A retry of a redemption that counted (its answer was lost with a silo): the same grant, no second use.
            return Grant(state);
        }

        if (state.Expires is { } expires && _time.GetUtcNow() >= expires)
        {
            if (!state.ExpiryRecorded)
            {
                // An expiry happens by itself; the log learns of it when the key is first refused for it.
                state.ExpiryRecorded = true;
                await _commit.Request();
                await RecordAsync(EventTypes.KeyExpired, new { expired = expires, uses = state.Uses });
            }

            return Refuse(Failure.Forbidden("key_expired", "The auth key has expired."));
        }

        if (!state.Reusable && state.Uses > 0)
        {
            return Refuse(Failure.Forbidden("key_used", "The single-use auth key has already been used."));
        }

        state.Uses++;
        var remembered = state.RecentRedemptions;
        if (requestId is not null)
        {
            state.RecentRedemptions = [.. remembered.TakeLast(RememberedRedemptions - 1), requestId];
        }

        try
        {
            await _commit.Request();
        }
        catch
        {
            // Not durable: the use does not count (the next write persists the corrected count).
            state.Uses--;
            state.RecentRedemptions = state.RecentRedemptions.Where(id => id != requestId).ToArray();
            throw;
        }

        if (!state.Reusable)
        {
            await RecordAsync(EventTypes.KeyUsedUp, new { uses = state.Uses });
        }

        return Grant(state);
    }

    private RedeemResult Grant(AuthKeyState state) =>
        new(new KeyGrant(Id, state.Tailnet!, state.Ephemeral, state.Preauthorized, state.Tags), null);

    public Task<AuthKeyInfo?> Describe() => Task.FromResult(State.Tailnet is null ? null : Info());

    public async Task<bool> Revoke()
    {
        if (State.Tailnet is null)
        {
            return false;
        }

        if (!State.Revoked)
        {
            State.Revoked = true;
            await _commit.Request();
            LogRevoked(Id);
            await RecordAsync(EventTypes.KeyRevoked, new { uses = State.Uses });
        }

        return true;
    }

    private Task RecordAsync(string type, object data) =>
        _auditLog.RecordAsync(State.Tailnet!, EventDraft.Create(type, EventActors.Current, $"key:{Id}", null, data));

    private RedeemResult Refuse(Failure failure)
    {
        LogRefused(Id, failure.Code);
        return new RedeemResult(null, failure);
    }

    private AuthKeyInfo Info()
    {
        var s = State;
        return new AuthKeyInfo(Id, s.Tailnet!, s.Reusable, s.Ephemeral, s.Preauthorized, s.Tags, s.Created, s.Expires, s.Description, s.Revoked, s.Uses);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Auth key {KeyId} created in tailnet {Tailnet} (reusable: {Reusable}, ephemeral: {Ephemeral})")]
    private partial void LogCreated(string keyId, string tailnet, bool reusable, bool ephemeral);

    [LoggerMessage(Level = LogLevel.Information, Message = "Auth key {KeyId} revoked")]
    private partial void LogRevoked(string keyId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Auth key {KeyId} refused: {Reason}")]
    private partial void LogRefused(string keyId, string reason);
}
