using Orleans.Concurrency;

namespace EphemeralOrleans.Contracts.Grains;

/// <summary>The names of every tailnet that has had an auth key (the one grain of key <see cref="Key"/>): the console's switcher.</summary>
[Alias("eo.ITailnetDirectoryGrain")]
public interface ITailnetDirectoryGrain : IGrainWithIntegerKey
{
    /// <summary>The single instance's key.</summary>
    public const long Key = 0;

    /// <summary>Records a tailnet name (idempotent); completes once it is durable.</summary>
    [Alias("Add")]
    Task Add(string tailnet);

    /// <summary>Every recorded tailnet name, sorted.</summary>
    [ReadOnly]
    [Alias("List")]
    Task<string[]> List();
}

/// <summary>The tailnets as the gateways list them.</summary>
public static class TailnetDirectory
{
    /// <summary>Every tailnet: those the directory recorded, and the default one, which exists without being recorded; sorted.</summary>
    public static async Task<string[]> ListTailnetsAsync(this IGrainFactory grains) =>
        (await grains.GetGrain<ITailnetDirectoryGrain>(ITailnetDirectoryGrain.Key).List())
            .Append(Validation.Identifiers.DefaultTailnet).Distinct().Order(StringComparer.Ordinal).ToArray();
}
