namespace EphemeralOrleans.Contracts.Options;

/// <summary><c>Map:*</c>: how netmap streams are fed.</summary>
public sealed class MapOptions
{
    public const string Section = "Map";

    /// <summary>A keepalive is sent when a stream was silent this long.</summary>
    public TimeSpan KeepAliveInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Registry changes are coalesced for this long before they go out to gateways.</summary>
    public TimeSpan BatchWindow { get; set; } = TimeSpan.FromMilliseconds(100);
}
