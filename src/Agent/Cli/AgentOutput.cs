using System.Text.Encodings.Web;
using System.Text.Json;
using EphemeralOrleans.Agent.Control;
using EphemeralOrleans.Protocol.V1;

namespace EphemeralOrleans.Agent.Cli;

/// <summary>What the agent tells its user: readable lines, or with <c>--json</c> one JSON object a line.</summary>
public sealed class AgentOutput(bool json)
{
    /// <summary>For people and jq, not HTML: <c>+</c> and non-ASCII names stay as they are.</summary>
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly Lock _lock = new();

    public void Event(string name, object? data, string text)
    {
        lock (_lock)
        {
            if (json)
            {
                var line = new Dictionary<string, object?> { ["event"] = name };
                if (data is not null)
                {
                    foreach (var property in JsonSerializer.SerializeToElement(data, Json).EnumerateObject())
                    {
                        line[property.Name] = property.Value;
                    }
                }

                Console.Out.WriteLine(JsonSerializer.Serialize(line, Json));
            }
            else if (text.Length > 0)
            {
                Console.Out.WriteLine(text);
            }

            Console.Out.Flush();
        }
    }

    public void Registered(Node node, bool resumed) => Event(resumed ? "resumed" : "registered", new { node = NetmapNode.Describe(node) },
        $"{(resumed ? "resumed" : "registered")}: {node.Name} ({node.Id}) {node.Ipv4} {node.Ipv6}{(node.Ephemeral ? " ephemeral" : "")}");

    public void Full(NetmapSnapshot netmap)
    {
        var peers = netmap.PeersByName();
        var text = $"connected: {netmap.Self.Name} {netmap.Self.Ipv4}, {peers.Length} peer(s)"
            + string.Concat(peers.Select(p => $"\n  {p.Name,-24} {p.Wire.Ipv4,-16} {(p.Wire.Online ? "online" : "offline")}"));
        Event("netmap", netmap.Map(), text);
    }

    /// <summary>A change, told by name against the map it changed (<paramref name="before"/>): who joined, who left,
    /// who came online or went offline.</summary>
    public void Delta(MapDelta delta, NetmapSnapshot before)
    {
        string Name(string id) => before.Peers.TryGetValue(id, out var peer) ? peer.Name : id;
        var lines = delta.PeersChanged.Select(p => before.Peers.ContainsKey(p.Id)
                ? $"  ~ {p.Name} changed ({p.Ipv4}, {(p.Online ? "online" : "offline")})"
                : $"  + {p.Name} joined ({p.Ipv4}{(p.Tags.Count > 0 ? ", " + string.Join(',', p.Tags) : "")}, {(p.Online ? "online" : "offline")})")
            .Concat(delta.PeersChangedPatch.Select(p => $"  ~ {Name(p.Id)} is {(p.Online ? "online" : "offline")}"))
            .Concat(delta.PeersRemoved.Select(id => $"  - {Name(id)} left"));
        Event("change", new
        {
            version = delta.Version,
            peersChanged = delta.PeersChanged.Select(NetmapNode.Describe).ToArray(),
            peersRemoved = delta.PeersRemoved.ToArray(),
            peersChangedPatch = delta.PeersChangedPatch.Select(p => new { id = p.Id, online = p.Online, lastSeen = p.LastSeen?.ToDateTimeOffset() }).ToArray(),
            self = delta.Self is { } self ? NetmapNode.Describe(self) : null,
        }, lines.Any() ? "change:\n" + string.Join('\n', lines) : "");
    }

    public void Error(string code, string message) => Event("error", new { code, message }, $"error: {message} ({code})");
}
