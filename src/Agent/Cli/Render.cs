using System.CommandLine.Parsing;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace EphemeralOrleans.Agent.Cli;

/// <summary>Readable forms of the local API's answers.</summary>
public static class Render
{
    public static string Human(string request, JsonElement answer, bool ipv6 = false)
    {
        var text = new StringBuilder();
        if (request == "status")
        {
            // Like `tailscale status`: this node, then every peer with its state, and the tunnel's view once it is up.
            var node = answer.GetProperty("node");
            var wireguard = answer.TryGetProperty("wireguard", out var w) && w.ValueKind == JsonValueKind.Object ? w : (JsonElement?)null;
            text.Append(CultureInfo.InvariantCulture, $"{(answer.GetProperty("connected").GetBoolean() ? "connected to" : "disconnected from")} {answer.GetProperty("loginServer").GetString()}");
            if (wireguard is { } device)
            {
                text.Append(CultureInfo.InvariantCulture, $"; WireGuard {device.GetProperty("device").GetString()} on UDP {device.GetProperty("listenPort").GetInt32()}");
            }

            var tunnel = wireguard?.GetProperty("peers").EnumerateArray().ToDictionary(p => p.GetProperty("id").GetString()!, StringComparer.Ordinal) ?? [];
            var header = new List<string> { "NAME", "IPV4" };
            if (ipv6)
            {
                header.Add("IPV6");
            }

            header.AddRange(["TAGS", "STATE"]);
            if (wireguard is not null)
            {
                header.AddRange(["ENDPOINT", "HANDSHAKE", "RX", "TX"]);
            }

            var self = new List<string> { node.GetProperty("name").GetString() + " (this node)", node.GetProperty("ipv4").GetString()! };
            var rows = new List<string[]>();
            if (ipv6)
            {
                self.Add(node.GetProperty("ipv6").GetString()!);
            }

            self.AddRange([Tags(node), "-"]);
            if (wireguard is not null)
            {
                self.AddRange(["-", "-", "-", "-"]);
            }

            rows.Add([.. self]);
            foreach (var peer in answer.GetProperty("peerStatus").EnumerateArray())
            {
                var row = new List<string> { peer.GetProperty("name").GetString()!, peer.GetProperty("ipv4").GetString()! };
                if (ipv6)
                {
                    row.Add(peer.GetProperty("ipv6").GetString()!);
                }

                row.AddRange([Tags(peer), NodeState(peer)]);
                if (wireguard is not null)
                {
                    var seen = tunnel.GetValueOrDefault(peer.GetProperty("id").GetString()!);
                    var handshake = seen.ValueKind == JsonValueKind.Object && seen.GetProperty("lastHandshake") is { ValueKind: JsonValueKind.String } h ? $"{Ago(h.GetDateTimeOffset())} ago" : "-";
                    row.AddRange([
                        seen.ValueKind != JsonValueKind.Object ? "-"
                            : seen.TryGetProperty("path", out var path) && path.GetString() == "relayed" ? "relay"
                            : seen.GetProperty("endpoint").GetString() ?? "-",
                        handshake,
                        seen.ValueKind == JsonValueKind.Object ? Bytes(seen.GetProperty("rxBytes").GetInt64()) : "-",
                        seen.ValueKind == JsonValueKind.Object ? Bytes(seen.GetProperty("txBytes").GetInt64()) : "-",
                    ]);
                }

                rows.Add([.. row]);
            }

            text.Append('\n').Append(Table([.. header], rows));
            return text.ToString();
        }

        foreach (var node in new[] { answer.GetProperty("self") }.Concat(answer.GetProperty("peers").EnumerateArray()))
        {
            text.Append(CultureInfo.InvariantCulture,
                $"{node.GetProperty("ipv4").GetString(),-16} {node.GetProperty("name").GetString(),-24} {(node.GetProperty("online").GetBoolean() ? "online" : "offline")}\n");
        }

        return text.ToString().TrimEnd();
    }

    /// <summary>Rows under a header, each column as wide as its widest cell (the last column unpadded).</summary>
    public static string Table(string[] header, IEnumerable<string[]> rows)
    {
        var all = rows.Prepend(header).ToList();
        var widths = Enumerable.Range(0, header.Length).Select(i => all.Max(r => r[i].Length)).ToArray();
        return string.Join('\n', all.Select(r => string.Join("  ", r.Select((cell, i) => i == r.Length - 1 ? cell : cell.PadRight(widths[i]))).TrimEnd()));
    }

    /// <summary>One row with fixed column widths (a stream of rows cannot be measured first); the last column unpadded.</summary>
    public static string Row(string[] cells, int[] widths) =>
        string.Join("  ", cells.Select((cell, i) => i == cells.Length - 1 ? cell : cell.PadRight(widths[i]))).TrimEnd();

    /// <summary>An audit event's cells: id, time, type, actor, target, and its data as name=value pairs.</summary>
    public static string[] EventCells(JsonElement e) =>
    [
        e.GetProperty("id").GetInt64().ToString(System.Globalization.CultureInfo.InvariantCulture),
        e.GetProperty("time").GetDateTimeOffset().ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture),
        e.GetProperty("type").GetString()!,
        e.GetProperty("actor").GetString()!,
        e.GetProperty("target").GetString()!,
        string.Join(' ', e.GetProperty("data").EnumerateObject()
            .Where(p => p.Value.ValueKind is not (JsonValueKind.Null or JsonValueKind.Undefined))
            .Select(p => $"{p.Name}={(p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString() : p.Value.GetRawText())}")),
    ];

    /// <summary>A node's state in words: online, logged out, waiting for approval, or when it was last seen.</summary>
    public static string NodeState(JsonElement node) =>
        node.TryGetProperty("loggedOut", out var loggedOut) && loggedOut.GetBoolean() ? "logged out"
        : node.TryGetProperty("authorized", out var authorized) && !authorized.GetBoolean() ? "needs approval"
        : node.GetProperty("online").GetBoolean() ? "online"
        : node.TryGetProperty("lastSeen", out var seen) && seen.ValueKind == JsonValueKind.String ? $"last seen {Ago(seen.GetDateTimeOffset())} ago"
        : "never connected";

    /// <summary>A key's state in words: revoked, expired, used (single-use, spent) or valid.</summary>
    public static string KeyState(JsonElement key) =>
        key.GetProperty("revoked").GetBoolean() ? "revoked"
        : key.TryGetProperty("expires", out var expires) && expires.ValueKind == JsonValueKind.String && expires.GetDateTimeOffset() <= DateTimeOffset.UtcNow ? "expired"
        : !key.GetProperty("reusable").GetBoolean() && key.GetProperty("uses").GetInt32() > 0 ? "used"
        : "valid";

    public static string Tags(JsonElement item) =>
        item.TryGetProperty("tags", out var tags) && tags.GetArrayLength() > 0 ? string.Join(',', tags.EnumerateArray().Select(t => t.GetString())) : "-";

    public static string Ago(DateTimeOffset at)
    {
        var ago = DateTimeOffset.UtcNow - at;
        return ago.TotalSeconds < 90 ? $"{Math.Max(0, ago.TotalSeconds):0}s" : ago.TotalMinutes < 90 ? $"{ago.TotalMinutes:0}m" : $"{ago.TotalHours:0}h";
    }

    public static string Bytes(long bytes) => bytes switch
    {
        < 1024 => $"{bytes} B",
        < 1024 * 1024 => $"{bytes / 1024.0:0.0} KiB",
        _ => $"{bytes / (1024.0 * 1024):0.0} MiB",
    };
}

/// <summary>Durations as people write them: <c>90s</c>, <c>15m</c>, <c>1h</c>, <c>7d</c>, <c>2w</c>, or <c>hh:mm:ss</c>.</summary>
public static class Durations
{
    /// <summary>For an option's parser: the duration, or an error that names the option (no exception).</summary>
    public static TimeSpan Option(ArgumentResult result)
    {
        var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
        try
        {
            var value = Parse(text);
            if (value > TimeSpan.Zero)
            {
                return value;
            }
        }
        catch (Exception exception) when (exception is FormatException or OverflowException)
        {
        }

        var name = result.Parent is OptionResult { Option: var option } ? option.Name : "a duration";
        result.AddError($"{name} takes a positive duration such as 30s, 5m, 1h, 7d, 2w or 00:00:30; not '{text}'");
        return default;
    }

    public static TimeSpan Parse(string text)
    {
        if (text.Length > 1 && double.TryParse(text[..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out var number))
        {
            switch (text[^1])
            {
                case 's': return TimeSpan.FromSeconds(number);
                case 'm': return TimeSpan.FromMinutes(number);
                case 'h': return TimeSpan.FromHours(number);
                case 'd': return TimeSpan.FromDays(number);
                case 'w': return TimeSpan.FromDays(7 * number);
            }
        }

        return TimeSpan.Parse(text, CultureInfo.InvariantCulture);
    }
}
