using System.Text.Json.Nodes;

namespace EphemeralOrleans.Contracts.Policy;

/// <summary>What a policy change changed, for the audit log: the top-level sections that differ, and the number of
/// ACL rules before and after (the documents themselves stay in the policy history, not in every event).</summary>
public static class PolicyDiff
{
    public static object Summary(string before, string after)
    {
        var old = JsonNode.Parse(before) as JsonObject ?? [];
        var @new = JsonNode.Parse(after) as JsonObject ?? [];
        var sections = old.Select(p => p.Key).Union(@new.Select(p => p.Key), StringComparer.Ordinal)
            .Where(key => !JsonNode.DeepEquals(old[key], @new[key]))
            .Order(StringComparer.Ordinal)
            .ToArray();
        return new { changed = sections, aclsBefore = Count(old, "acls"), aclsAfter = Count(@new, "acls") };
    }

    private static int Count(JsonObject document, string section) => document[section] is JsonArray array ? array.Count : 0;
}
