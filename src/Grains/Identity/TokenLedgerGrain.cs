using EphemeralOrleans.Contracts.Grains;
using Orleans.Concurrency;

namespace EphemeralOrleans.Grains.Identity;

/// <summary>
/// The token ledger (see <see cref="ITokenLedgerGrain"/>): the store's claim is atomic, so any number of these serve
/// every silo's registrations, and a token costs one write — no activation, read or timer of its own.
/// </summary>
[StatelessWorker]
public sealed class TokenLedgerGrain(ITokenUseStore uses, TimeProvider time) : Grain, ITokenLedgerGrain
{
    public Task<bool> Claim(string replayKey, string nodeKey, DateTimeOffset expiresAt) =>
        uses.ClaimAsync(replayKey, nodeKey, expiresAt, time.GetUtcNow());
}
