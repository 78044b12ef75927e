using System.Globalization;
using System.Text;
using System.Text.Json;

namespace EphemeralOrleans.Agent;

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
            return text.ToString();
        }

        foreach (var node in new[] { answer.GetProperty("self") }.Concat(answer.GetProperty("peers").EnumerateArray()))
        {
            text.Append(CultureInfo.InvariantCulture,
                $"{node.GetProperty("ipv4").GetString(),-16} {node.GetProperty("name").GetString(),-24} {(node.GetProperty("online").GetBoolean() ? "online" : "offline")}\n");
        }

        return text.ToString().TrimEnd();
    }
}

/// <summary>Durations as people write them: <c>90s</c>, <c>15m</c>, <c>1h</c>, <c>7d</c>, or <c>hh:mm:ss</c>.</summary>
public static class Durations
{
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
            }
        }

        return TimeSpan.Parse(text, CultureInfo.InvariantCulture);
    }
}
