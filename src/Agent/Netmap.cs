using System.Text.Encodings.Web;
using System.Text.Json;
using EphemeralOrleans.Protocol.V1;

namespace EphemeralOrleans.Agent;

/// <summary>The agent's view of its tailnet: itself and its peers, kept current from the map stream.</summary>
public sealed class Netmap
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, Node> _peers = new(StringComparer.Ordinal);
    private PacketFilterRule[] _packetFilter = [];

    public Netmap(Node self) => Self = self;

    public Node Self { get; private set; }

    public bool Connected { get; private set; }

    public long Version { get; private set; }

    public void Apply(MapResponse message)
    {
        lock (_lock)
        {
            switch (message.MessageCase)
            {
                case MapResponse.MessageOneofCase.Full:
                    Self = message.Full.Self;
                    Version = message.Full.Version;
                    _peers.Clear();
                    foreach (var peer in message.Full.Peers)
                    {
                        _peers[peer.Id] = peer;
                    }

                    _packetFilter = [.. message.Full.PacketFilter];

                    Connected = true;
                    break;
                case MapResponse.MessageOneofCase.Delta:
                    Version = message.Delta.Version;
                    Self = message.Delta.Self ?? Self;
                    foreach (var peer in message.Delta.PeersChanged)
                    {
                        _peers[peer.Id] = peer;
                    }

                    foreach (var id in message.Delta.PeersRemoved)
                    {
                        _peers.Remove(id);
                    }

                    foreach (var patch in message.Delta.PeersChangedPatch)
                    {
                        if (_peers.TryGetValue(patch.Id, out var peer))
                        {
                            var patched = peer.Clone();
                            patched.Online = patch.Online;
                            patched.LastSeen = patch.LastSeen;
                            _peers[patch.Id] = patched;
                        }
                    }

                    if (message.Delta.PacketFilter is { } filter)
                    {
                        _packetFilter = [.. filter.Rules];
                    }

                    break;
            }
        }
    }

    public void Disconnected()
    {
        lock (_lock)
        {
            Connected = false;
        }
    }

    public Node[] Peers()
    {
        lock (_lock)
        {
            return [.. _peers.Values.OrderBy(p => p.Name, StringComparer.Ordinal)];
        }
    }

    /// <summary><c>status</c>: connected, addresses, peer count.</summary>
    public object Status(string loginServer)
    {
        lock (_lock)
        {
            return new
            {
                connected = Connected,
                loginServer,
                node = Describe(Self),
                addresses = new[] { Self.Ipv4, Self.Ipv6 },
                peers = _peers.Count,
                version = Version,
            };
        }
    }

    /// <summary><c>netmap</c>: the node, every peer, and what may reach the node.</summary>
    public object Map()
    {
        lock (_lock)
        {
            return new
            {
                self = Describe(Self),
                peers = Peers().Select(Describe).ToArray(),
                packetFilter = _packetFilter.Select(r => new { sources = r.Sources.ToArray(), ports = r.Ports }).ToArray(),
                version = Version,
            };
        }
    }

    /// <summary>A node as the agent prints it in JSON: the API's field names.</summary>
    public static Dictionary<string, object?> Describe(Node node) => new()
    {
        ["id"] = node.Id,
        ["name"] = node.Name,
        ["hostname"] = node.Hostname,
        ["ipv4"] = node.Ipv4,
        ["ipv6"] = node.Ipv6,
        ["ephemeral"] = node.Ephemeral,
        ["tags"] = node.Tags.ToArray(),
        ["online"] = node.Online,
        ["authorized"] = node.Authorized,
        ["lastSeen"] = node.LastSeen?.ToDateTimeOffset(),
    };
}

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

    public void Registered(Node node, bool resumed) => Event(resumed ? "resumed" : "registered", new { node = Netmap.Describe(node) },
        $"{(resumed ? "resumed" : "registered")}: {node.Name} ({node.Id}) {node.Ipv4} {node.Ipv6}{(node.Ephemeral ? " ephemeral" : "")}");

    public void Full(Netmap netmap)
    {
        var peers = netmap.Peers();
        var text = $"connected: {netmap.Self.Name} {netmap.Self.Ipv4}, {peers.Length} peer(s)"
            + string.Concat(peers.Select(p => $"\n  {p.Name,-24} {p.Ipv4,-16} {(p.Online ? "online" : "offline")}"));
        Event("netmap", netmap.Map(), text);
    }

    public void Delta(MapDelta delta)
    {
        var lines = delta.PeersChanged.Select(p => $"  ~ {p.Name,-22} {p.Ipv4,-16} {(p.Online ? "online" : "offline")}")
            .Concat(delta.PeersChangedPatch.Select(p => $"  ~ {p.Id,-22} {(p.Online ? "online" : "offline")}"))
            .Concat(delta.PeersRemoved.Select(id => $"  - {id}"));
        Event("change", new
        {
            version = delta.Version,
            peersChanged = delta.PeersChanged.Select(Netmap.Describe).ToArray(),
            peersRemoved = delta.PeersRemoved.ToArray(),
            peersChangedPatch = delta.PeersChangedPatch.Select(p => new { id = p.Id, online = p.Online, lastSeen = p.LastSeen?.ToDateTimeOffset() }).ToArray(),
            self = delta.Self is { } self ? Netmap.Describe(self) : null,
        }, lines.Any() ? "change:\n" + string.Join('\n', lines) : "");
    }

    public void Error(string code, string message) => Event("error", new { code, message }, $"error: {message} ({code})");
}
