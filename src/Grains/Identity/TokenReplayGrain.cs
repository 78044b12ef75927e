using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Grains.Common;

namespace EphemeralOrleans.Grains.Identity;

[GenerateSerializer, Alias("TokenUseState")]
public sealed class TokenUseState
{
    [Id(0)] public string? NodeKey { get; set; }
    [Id(1)] public DateTimeOffset ExpiresAt { get; set; }
}

/// <summary>
/// A token's use (see <see cref="ITokenReplayGrain"/>), stored so a restart or another silo honours it. Only the hash
/// of the token is the key; the token is never stored. Once the token has expired its record is cleared — at the
/// next call, or by a timer while the grain is active.
/// </summary>
public sealed class TokenReplayGrain(
    [PersistentState("tokenUse", StorageNames.State)] IPersistentState<TokenUseState> use,
    TimeProvider time) : Grain, ITokenReplayGrain
{
    private IGrainTimer? _expiry;

    public async Task<bool> Claim(string nodeKey, DateTimeOffset expiresAt)
    {
        var now = time.GetUtcNow();
        if (use.State.NodeKey is { } claimed && use.State.ExpiresAt > now)
        {
            return claimed == nodeKey;
        }

        use.State.NodeKey = nodeKey;
        use.State.ExpiresAt = expiresAt;
        await use.WriteStateAsync();
        _expiry?.Dispose();
        _expiry = this.RegisterGrainTimer(ClearAsync, new GrainTimerCreationOptions(Max(expiresAt - now, TimeSpan.Zero), Timeout.InfiniteTimeSpan));
        return true;
    }

    private async Task ClearAsync(CancellationToken cancellationToken)
    {
        if (use.State.NodeKey is not null && use.State.ExpiresAt <= time.GetUtcNow())
        {
            await use.ClearStateAsync(cancellationToken);
            DeactivateOnIdle();
        }
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;
}
