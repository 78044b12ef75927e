using System.Collections.Immutable;
using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Grains.Common;

namespace EphemeralOrleans.Grains.Console;

[GenerateSerializer, Alias("ConsoleSession")]
public sealed record ConsoleSession([property: Id(0)] byte[] Ticket, [property: Id(1)] DateTimeOffset ExpiresAt);

[GenerateSerializer, Alias("eo.ConsoleSessionsState")]
public sealed class ConsoleSessionsState
{
    [Id(0)] public ImmutableDictionary<string, ConsoleSession> Sessions { get; set; } = ImmutableDictionary.Create<string, ConsoleSession>(StringComparer.Ordinal);
}

/// <summary>The console's sessions (see <see cref="IConsoleSessionsGrain"/>): a handful at a time, so one grain holds
/// them all; expired ones are dropped with the next write.</summary>
public sealed class ConsoleSessionsGrain(
    [PersistentState("consolesessions", StorageNames.State)] IPersistentState<ConsoleSessionsState> sessions,
    TimeProvider time) : Grain, IConsoleSessionsGrain
{
    public Task Store(string idHash, byte[] ticket, DateTimeOffset expiresAt) =>
        WriteAsync(live => live.SetItem(idHash, new ConsoleSession(ticket, expiresAt)));

    public Task<byte[]?> Retrieve(string idHash) =>
        Task.FromResult(sessions.State.Sessions.GetValueOrDefault(idHash) is { } session && session.ExpiresAt > time.GetUtcNow() ? session.Ticket : null);

    public Task Remove(string idHash) =>
        sessions.State.Sessions.ContainsKey(idHash) ? WriteAsync(live => live.Remove(idHash)) : Task.CompletedTask;

    private async Task WriteAsync(Func<ImmutableDictionary<string, ConsoleSession>, ImmutableDictionary<string, ConsoleSession>> change)
    {
        var before = sessions.State.Sessions;
        var now = time.GetUtcNow();
        var live = before.RemoveRange(before.Where(s => s.Value.ExpiresAt <= now).Select(s => s.Key));
        sessions.State.Sessions = change(live);
        try
        {
            await sessions.WriteStateAsync();
        }
        catch
        {
            // Not durable, so not changed.
            sessions.State.Sessions = before;
            throw;
        }
    }
}
