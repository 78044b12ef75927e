using System.Collections.Immutable;
using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Grains.Common;

namespace EphemeralOrleans.Grains.Console;

[GenerateSerializer]
public sealed class TailnetDirectoryState
{
    [Id(0)] public ImmutableSortedSet<string> Tailnets { get; set; } = ImmutableSortedSet.Create<string>(StringComparer.Ordinal);
}

public sealed class TailnetDirectoryGrain(
    [PersistentState("tailnets", StorageNames.State)] IPersistentState<TailnetDirectoryState> directory) : Grain, ITailnetDirectoryGrain
{
    public async Task Add(string tailnet)
    {
        var before = directory.State.Tailnets;
        if (!before.Contains(tailnet))
        {
            directory.State.Tailnets = before.Add(tailnet);
            try
            {
                await directory.WriteStateAsync();
            }
            catch
            {
                // Not durable, so not recorded: the next Add writes again.
                directory.State.Tailnets = before;
                throw;
            }
        }
    }

    public Task<string[]> List() => Task.FromResult(directory.State.Tailnets.ToArray());
}

[GenerateSerializer]
public sealed class KeyRingState
{
    [Id(0)] public ImmutableDictionary<string, string> Elements { get; set; } = ImmutableDictionary.Create<string, string>(StringComparer.Ordinal);

    /// <summary>The gateways' control key, private half, base64; null until the first gateway asks.</summary>
    [Id(1)] public string? ControlKey { get; set; }
}

public sealed class KeyRingGrain(
    [PersistentState("keyring", StorageNames.State)] IPersistentState<KeyRingState> ring) : Grain, IKeyRingGrain
{
    public Task<Dictionary<string, string>> GetElements() => Task.FromResult(ring.State.Elements.ToDictionary(StringComparer.Ordinal));

    public Task StoreElement(string friendlyName, string xml) => WriteAsync(state => state.Elements = state.Elements.SetItem(friendlyName, xml));

    public Task RemoveElements(string[] friendlyNames) => WriteAsync(state => state.Elements = state.Elements.RemoveRange(friendlyNames));

    public async Task<string> GetOrCreateControlKey(string candidate)
    {
        if (ring.State.ControlKey is not { } stored)
        {
            await WriteAsync(state => state.ControlKey = candidate);
            stored = candidate;
        }

        return stored;
    }

    public Task ReplaceControlKey(string stored, string replacement) =>
        ring.State.ControlKey == stored ? WriteAsync(state => state.ControlKey = replacement) : Task.CompletedTask;

    /// <summary>Applies <paramref name="change"/> and writes it; on a failed write the state is as before.</summary>
    private async Task WriteAsync(Action<KeyRingState> change)
    {
        var before = new KeyRingState { Elements = ring.State.Elements, ControlKey = ring.State.ControlKey };
        change(ring.State);
        try
        {
            await ring.WriteStateAsync();
        }
        catch
        {
            ring.State.Elements = before.Elements;
            ring.State.ControlKey = before.ControlKey;
            throw;
        }
    }
}

[GenerateSerializer, Alias("ConsoleSession")]
public sealed record ConsoleSession([property: Id(0)] byte[] Ticket, [property: Id(1)] DateTimeOffset ExpiresAt);

[GenerateSerializer]
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
