using System.CommandLine.Parsing;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace EphemeralOrleans.Agent.Cli;

/// <summary>Readable forms of the local API's answers.</summary>
public static class Render
{
    public static string Human(string request, JsonElement answer)
    {
        var text = new StringBuilder();
        if (request == "status")
        {
            var node = answer.GetProperty("node");
            text.Append(CultureInfo.InvariantCulture, $"{(answer.GetProperty("connected").GetBoolean() ? "connected" : "disconnected")} to {answer.GetProperty("loginServer").GetString()}\n");
            text.Append(CultureInfo.InvariantCulture, $"{node.GetProperty("name").GetString()} ({node.GetProperty("id").GetString()})  ");
            text.Append(string.Join(", ", answer.GetProperty("addresses").EnumerateArray().Select(a => a.GetString())));
            text.Append(CultureInfo.InvariantCulture, $"\n{answer.GetProperty("peers").GetInt32()} peer(s)");
            if (answer.TryGetProperty("wireguard", out var wireguard) && wireguard.ValueKind == JsonValueKind.Object)
            {
                text.Append(CultureInfo.InvariantCulture,
                    $"\nWireGuard {wireguard.GetProperty("device").GetString()} on UDP {wireguard.GetProperty("listenPort").GetInt32()}");
                foreach (var peer in wireguard.GetProperty("peers").EnumerateArray())
                {
                    var handshake = peer.GetProperty("lastHandshake") is { ValueKind: JsonValueKind.String } h
                        ? $"handshake {Ago(h.GetDateTimeOffset())} ago"
                        : "no handshake";
                    text.Append(CultureInfo.InvariantCulture,
                        $"\n  {peer.GetProperty("name").GetString(),-24} {peer.GetProperty("ipv4").GetString(),-16} {peer.GetProperty("endpoint").GetString() ?? "-",-24} {handshake,-20} rx {Bytes(peer.GetProperty("rxBytes").GetInt64())} tx {Bytes(peer.GetProperty("txBytes").GetInt64())}");
                }
            }

            return text.ToString();
        }

        foreach (var node in new[] { answer.GetProperty("self") }.Concat(answer.GetProperty("peers").EnumerateArray()))
        {
            text.Append(CultureInfo.InvariantCulture,
                $"{node.GetProperty("ipv4").GetString(),-16} {node.GetProperty("name").GetString(),-24} {(node.GetProperty("online").GetBoolean() ? "online" : "offline")}\n");
        }

        return text.ToString().TrimEnd();
    }

    private static string Ago(DateTimeOffset at)
    {
        var ago = DateTimeOffset.UtcNow - at;
        return ago.TotalSeconds < 90 ? $"{Math.Max(0, ago.TotalSeconds):0}s" : ago.TotalMinutes < 90 ? $"{ago.TotalMinutes:0}m" : $"{ago.TotalHours:0}h";
    }

    private static string Bytes(long bytes) => bytes switch
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
