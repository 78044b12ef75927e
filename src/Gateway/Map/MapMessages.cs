using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Serialization;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Policy;

namespace EphemeralOrleans.Gateway.Map;

/// <summary>One line of a netmap stream.</summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "type")]
[JsonDerivedType(typeof(FullMapMessage), "full")]
[JsonDerivedType(typeof(DeltaMessage), "delta")]
[JsonDerivedType(typeof(KeepAliveMessage), "keepalive")]
public abstract record MapMessage
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new NodeEntryAsApiNode() },
    };

    /// <summary>The NDJSON encoding of messages, made once per message however many streams send it (streams of one
    /// policy class share their deltas).</summary>
    private static readonly ConditionalWeakTable<MapMessage, byte[]> Utf8JsonCache = new();

    public byte[] Utf8Json() => Utf8JsonCache.GetValue(this, static m => JsonSerializer.SerializeToUtf8Bytes(m, Json));
}

/// <summary>The whole map: the node itself, every peer it may reach or that may reach it, and its packet filter.</summary>
public sealed record FullMapMessage(long Version, NodeEntry Self, NodeEntry[] Peers, PacketFilterRule[] PacketFilter) : MapMessage;

/// <summary>What changed since the previous message; <see cref="Self"/> only when the node itself changed.</summary>
public sealed record DeltaMessage(long Version, NodeEntry[] PeersChanged, string[] PeersRemoved, NodeEntry? Self = null) : MapMessage
{
    /// <summary>Peers whose presence alone changed (online, last seen): small patches instead of whole peers.</summary>
    public PresencePatch[]? PeersChangedPatch { get; init; }

    /// <summary>The node's new packet filter, when the policy changed it.</summary>
    public PacketFilterRule[]? PacketFilter { get; init; }

    /// <summary>When the first change in it was made, for the delivery-latency metric; not sent.</summary>
    [JsonIgnore]
    public DateTimeOffset ChangedAt { get; init; }
}

/// <summary>A peer's presence: whether it has a map stream, and when it was last seen.</summary>
public sealed record PresencePatch(string Id, bool Online, DateTimeOffset? LastSeen);

/// <summary>Sent when a stream was silent for <c>Map:KeepAliveInterval</c>.</summary>
public sealed record KeepAliveMessage : MapMessage
{
    public static readonly KeepAliveMessage Instance = new();
}

/// <summary>Nodes go out in the API's shape (<see cref="NodeView"/>), whatever the messages hold.</summary>
internal sealed class NodeEntryAsApiNode : JsonConverter<NodeEntry>
{
    public override NodeEntry Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        throw new NotSupportedException("Map messages are only written.");

    public override void Write(Utf8JsonWriter writer, NodeEntry value, JsonSerializerOptions options) =>
        JsonSerializer.Serialize(writer, NodeView.From(value) with { Subject = null }, options);
}
