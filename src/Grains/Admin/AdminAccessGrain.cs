using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Grains.Common;
using EphemeralOrleans.Grains.Events;

namespace EphemeralOrleans.Grains.Admin;

[GenerateSerializer, Alias("eo.AdminAccessState")]
public sealed class AdminAccessState
{
    /// <summary>Known sources, oldest first; at most <see cref="AdminAccessGrain.MaxSources"/>.</summary>
    [Id(0)] public List<string> Sources { get; set; } = [];
}

/// <summary>See <see cref="IAdminAccessGrain"/>. The list is bounded: a source forgotten for the oldest counts as new
/// again, which errs on the side of telling.</summary>
public sealed class AdminAccessGrain(
    [PersistentState("adminAccess", StorageNames.State)] IPersistentState<AdminAccessState> state,
    AuditLog auditLog) : Grain, IAdminAccessGrain
{
    public const int MaxSources = 1024;

    public async Task<bool> Used(string source, string surface)
    {
        if (state.State.Sources.Contains(source))
        {
            return false;
        }

        state.State.Sources.Add(source);
        if (state.State.Sources.Count > MaxSources)
        {
            state.State.Sources.RemoveAt(0);
        }

        await state.WriteStateAsync();
        await auditLog.AppendAsync(EventLogs.Admin,
            EventDraft.Create(EventTypes.AdminNewAddress, EventActors.AdminApi, "admin", null, new { address = source, surface }));
        return true;
    }
}
