using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using EphemeralOrleans.Contracts.Validation;

namespace EphemeralOrleans.Contracts.Policy;

/// <summary>
/// A tailnet's ACL policy, Tailscale-style: <c>acls</c> (accept rules from sources to destinations with ports),
/// <c>groups</c> and <c>tagOwners</c>. Parsed and checked as a whole; an error names the entry it is about
/// (<c>acls[1].dst[0]</c>), and nothing of an invalid document is kept.
/// </summary>
public sealed partial class PolicyDocument
{
    /// <summary>What a tailnet without a policy has: everyone reaches everyone.</summary>
    public const string AllowAllJson = """{"acls":[{"action":"accept","src":["*"],"dst":["*:*"]}]}""";

    private static readonly JsonSerializerOptions Compact = new() { WriteIndented = false };

    private PolicyDocument(string json, IReadOnlyDictionary<string, string[]> tagOwners, PolicyRule[] rules)
    {
        Json = json;
        TagOwners = tagOwners;
        Rules = rules;
    }

    /// <summary>The <c>accept</c> rules, groups expanded.</summary>
    public IReadOnlyList<PolicyRule> Rules { get; }

    /// <summary>The document as stored and returned (normalized JSON).</summary>
    public string Json { get; }

    /// <summary>Tags and their owners; empty when the policy names none (then any tag may be used).</summary>
    public IReadOnlyDictionary<string, string[]> TagOwners { get; }

    public static PolicyDocument AllowAll { get; } = Parse(AllowAllJson);

    /// <summary>Parses and checks <paramref name="json"/>, a policy being set.</summary>
    /// <exception cref="PolicyException">The document is not a valid policy; the message names the bad entry.</exception>
    public static PolicyDocument Parse(string json) => Parse(json, strictAddresses: true);

    /// <summary>Parses a policy that was stored: as <see cref="Parse(string)"/>, except that addresses in the shorthand
    /// forms earlier versions accepted ("10.1") are read as they were then, so a stored policy keeps its meaning.</summary>
    public static PolicyDocument ParseStored(string json) => Parse(json, strictAddresses: false);

    private static PolicyDocument Parse(string json, bool strictAddresses)
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException exception)
        {
            throw new PolicyException("$", $"not valid JSON: {exception.Message}");
        }

        if (root is not JsonObject document)
        {
            throw new PolicyException("$", "the policy must be a JSON object");
        }

        foreach (var property in document)
        {
            if (property.Key is not ("acls" or "groups" or "tagOwners"))
            {
                throw new PolicyException(property.Key, "unknown section (expected acls, groups, tagOwners)");
            }
        }

        var groups = ReadMap(document["groups"], "groups", "group:");
        foreach (var (group, members) in groups)
        {
            for (var i = 0; i < members.Length; i++)
            {
                if (members[i].StartsWith("group:", StringComparison.Ordinal))
                {
                    throw new PolicyException($"groups[\"{group}\"][{i}]", "groups cannot contain groups");
                }
            }
        }

        var tagOwners = ReadMap(document["tagOwners"], "tagOwners", "tag:");
        foreach (var (tag, owners) in tagOwners)
        {
            if (!Identifiers.IsTag(tag))
            {
                throw new PolicyException($"tagOwners[\"{tag}\"]", "a tag is tag:[a-z0-9-]+");
            }

            for (var i = 0; i < owners.Length; i++)
            {
                CheckGroupDefined(owners[i], groups, $"tagOwners[\"{tag}\"][{i}]");
            }
        }

        // Members are targets; a user (name@domain) is accepted for compatibility and matches no node (nodes here
        // belong to no user).
        foreach (var (group, members) in groups)
        {
            for (var i = 0; i < members.Length; i++)
            {
                if (!members[i].Contains('@', StringComparison.Ordinal))
                {
                    CheckSelector(members[i], groups, tagOwners, $"groups[\"{group}\"][{i}]", strictAddresses);
                }
            }
        }

        var acls = document["acls"] ?? new JsonArray();
        if (acls is not JsonArray rules)
        {
            throw new PolicyException("acls", "must be an array of rules");
        }

        var parsed = new List<PolicyRule>();
        for (var r = 0; r < rules.Count; r++)
        {
            var path = $"acls[{r}]";
            if (rules[r] is not JsonObject rule)
            {
                throw new PolicyException(path, "a rule is an object with action, src and dst");
            }

            if (rule["action"]?.GetValueKind() != JsonValueKind.String || rule["action"]!.GetValue<string>() != "accept")
            {
                throw new PolicyException($"{path}.action", "the only action is \"accept\"");
            }

            var sources = new List<string>();
            foreach (var (i, source) in Strings(rule["src"], $"{path}.src"))
            {
                CheckSelector(source, groups, tagOwners, $"{path}.src[{i}]", strictAddresses);
                sources.AddRange(Expand(source, groups));
            }

            var destinations = new List<PolicyDestination>();
            foreach (var (i, destination) in Strings(rule["dst"], $"{path}.dst"))
            {
                var at = $"{path}.dst[{i}]";
                var colon = destination.LastIndexOf(':');
                if (colon <= 0 || colon == destination.Length - 1)
                {
                    throw new PolicyException(at, $"'{destination}' must be <target>:<ports>, e.g. tag:db:5432 or *:*");
                }

                CheckSelector(destination[..colon], groups, tagOwners, at, strictAddresses);
                CheckPorts(destination[(colon + 1)..], at);
                destinations.AddRange(Expand(destination[..colon], groups).Select(t => new PolicyDestination(PolicyTarget.Parse(t), destination[(colon + 1)..])));
            }

            foreach (var property in rule)
            {
                if (property.Key is not ("action" or "src" or "dst"))
                {
                    throw new PolicyException($"{path}.{property.Key}", "unknown field (expected action, src, dst)");
                }
            }

            var sourceText = sources.Distinct(StringComparer.Ordinal).ToArray();
            parsed.Add(new PolicyRule(sourceText.Select(PolicyTarget.Parse).ToArray(), sourceText, destinations.ToArray()));
        }

        return new PolicyDocument(document.ToJsonString(Compact), tagOwners, parsed.ToArray());
    }

    /// <summary>Whether a key may carry <paramref name="tag"/>: the admin owns every tag, but with tagOwners set a tag
    /// must be named there.</summary>
    public bool Allows(string tag) => TagOwners.Count == 0 || TagOwners.ContainsKey(tag);

    private static Dictionary<string, string[]> ReadMap(JsonNode? node, string section, string prefix)
    {
        var map = new Dictionary<string, string[]>(StringComparer.Ordinal);
        if (node is null)
        {
            return map;
        }

        if (node is not JsonObject entries)
        {
            throw new PolicyException(section, "must be an object");
        }

        foreach (var (name, value) in entries)
        {
            if (!name.StartsWith(prefix, StringComparison.Ordinal) || name.Length == prefix.Length)
            {
                throw new PolicyException($"{section}[\"{name}\"]", $"names here start with {prefix}");
            }

            map[name] = Strings(value, $"{section}[\"{name}\"]").Select(p => p.Value).ToArray();
        }

        return map;
    }

    private static IEnumerable<(int Index, string Value)> Strings(JsonNode? node, string path)
    {
        if (node is not JsonArray array)
        {
            throw new PolicyException(path, "must be an array of strings");
        }

        var values = new List<(int, string)>();
        for (var i = 0; i < array.Count; i++)
        {
            if (array[i]?.GetValueKind() != JsonValueKind.String || string.IsNullOrWhiteSpace(array[i]!.GetValue<string>()))
            {
                throw new PolicyException($"{path}[{i}]", "must be a non-empty string");
            }

            values.Add((i, array[i]!.GetValue<string>()));
        }

        return values;
    }

    /// <summary>A source or destination target: <c>*</c>, a tag, a group, an address or CIDR, or a node name.</summary>
    private static void CheckSelector(string selector, Dictionary<string, string[]> groups, Dictionary<string, string[]> tagOwners, string path, bool strictAddresses)
    {
        if (selector == "*")
        {
            return;
        }

        if (selector.StartsWith("tag:", StringComparison.Ordinal))
        {
            if (!Identifiers.IsTag(selector))
            {
                throw new PolicyException(path, $"'{selector}' is not a tag (tag:[a-z0-9-]+)");
            }

            if (tagOwners.Count > 0 && !tagOwners.ContainsKey(selector))
            {
                throw new PolicyException(path, $"'{selector}' is not in tagOwners");
            }

            return;
        }

        if (selector.StartsWith("group:", StringComparison.Ordinal))
        {
            CheckGroupDefined(selector, groups, path);
            return;
        }

        if (IPAddress.TryParse(selector, out var address) || IPNetwork.TryParse(selector, out _))
        {
            if (strictAddresses && !AddressText.IsWrittenAsParsed(selector))
            {
                throw new PolicyException(path, $"'{selector}' is read as {(address?.ToString() ?? "another prefix")}: write an address as four decimal numbers without leading zeros "
                    + "(IPv6 without a zone), a prefix as address/length");
            }

            return;
        }

        if (!NodeName().IsMatch(selector))
        {
            throw new PolicyException(path, $"'{selector}' is not *, a tag, a group, an address, a CIDR or a node name");
        }
    }

    /// <summary>A group stands for its members; anything else for itself.</summary>
    private static IEnumerable<string> Expand(string selector, Dictionary<string, string[]> groups) =>
        selector.StartsWith("group:", StringComparison.Ordinal) ? groups[selector] : [selector];

    private static void CheckGroupDefined(string name, Dictionary<string, string[]> groups, string path)
    {
        if (name.StartsWith("group:", StringComparison.Ordinal) && !groups.ContainsKey(name))
        {
            throw new PolicyException(path, $"'{name}' is not defined in groups");
        }
    }

    private static void CheckPorts(string ports, string path)
    {
        if (ports == "*")
        {
            return;
        }

        foreach (var part in ports.Split(','))
        {
            var range = part.Split('-');
            // Digits only: int.TryParse would also take " 22", "+22" and "22\n".
            if (range.Length > 2 || !range.All(p => p.Length is > 0 and <= 5 && p.All(char.IsAsciiDigit) && int.Parse(p) is >= 1 and <= 65535)
                || (range.Length == 2 && int.Parse(range[0]) > int.Parse(range[1])))
            {
                throw new PolicyException(path, $"'{ports}' is not * or ports (1-65535, lists and ranges: 22,80,8000-8080)");
            }
        }
    }

    [GeneratedRegex(@"\A[a-z0-9][a-z0-9-]{0,62}\z")]
    private static partial Regex NodeName();
}

/// <summary>A policy that does not check out; <see cref="Entry"/> names where.</summary>
public sealed class PolicyException(string entry, string problem) : Exception($"{entry}: {problem}")
{
    public string Entry { get; } = entry;
}
