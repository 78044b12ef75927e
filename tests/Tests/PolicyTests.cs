using System.Net;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>The tailnet policy over HTTP and gRPC: the allow-all default, storing a valid policy, refusing an invalid
/// one with the entry it is about (the old one stays), and tagOwners limiting the tags keys may carry.</summary>
public sealed class PolicyTests : GatewayTest
{
    private const string Valid = """
        {
          // Comments and trailing commas are accepted, as in Tailscale's HuJSON.
          "groups": { "group:eng": ["alice@example.com", "bob@example.com"] },
          "tagOwners": { "tag:ci": ["group:eng"], "tag:db": [] },
          "acls": [
            { "action": "accept", "src": ["tag:ci"], "dst": ["tag:db:5432", "100.64.0.0/10:80,443", "build-host:8000-8080"] },
            { "action": "accept", "src": ["group:eng", "100.64.1.7"], "dst": ["*:*"] },
          ],
        }
        """;

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task Without_a_policy_everyone_may_reach_everyone(Transport transport)
    {
        var policy = await Gateway.Over(transport).GetPolicyAsync("fresh-" + transport.ToString().ToLowerInvariant());
        Assert.Equal(HttpStatusCode.OK, policy.Status);
        var rule = Assert.Single(policy.Body.GetProperty("acls").EnumerateArray());
        Assert.Equal("accept", rule.Str("action"));
        Assert.Equal(["*"], rule.GetProperty("src").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(["*:*"], rule.GetProperty("dst").EnumerateArray().Select(e => e.GetString()));
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task A_valid_policy_is_stored_and_an_invalid_one_is_refused_naming_the_entry_and_changes_nothing(Transport transport)
    {
        var api = Gateway.Over(transport);
        var tailnet = "policy-" + transport.ToString().ToLowerInvariant();
        var stored = await api.SetPolicyAsync(Valid, tailnet);
        Assert.Equal(HttpStatusCode.OK, stored.Status);
        Assert.Equal(2, stored.Body.GetProperty("acls").GetArrayLength());
        Assert.Equal(stored.Body.GetRawText(), (await api.GetPolicyAsync(tailnet)).Body.GetRawText());

        var invalid = new (string Policy, string Entry)[]
        {
            ("""{"acls":[{"action":"deny","src":["*"],"dst":["*:*"]}]}""", "acls[0].action"),
            ("""{"acls":[{"action":"accept","src":["*"],"dst":["*:*"]},{"action":"accept","src":["*"],"dst":["tag:db:99999"]}]}""", "acls[1].dst[0]"),
            ("""{"acls":[{"action":"accept","src":["group:ops"],"dst":["*:*"]}]}""", "acls[0].src[0]"),
            ("""{"acls":[{"action":"accept","src":["100.64.0.0/99"],"dst":["*:*"]}]}""", "acls[0].src[0]"),
            ("""{"tagOwners":{"tag:ci":[]},"acls":[{"action":"accept","src":["tag:other"],"dst":["*:*"]}]}""", "acls[0].src[0]"),
            ("""{"tagOwners":{"ci":[]}}""", "tagOwners[\"ci\"]"),
            ("""{"acl":[]}""", "acl"),
            ("""{"acls":[""", "$"),
        };
        foreach (var (policy, entry) in invalid)
        {
            var refused = await api.SetPolicyAsync(policy, tailnet);
            Assert.True((refused.Status, refused.Code) == (HttpStatusCode.BadRequest, "invalid_policy"), $"{policy}: {refused.Status} {refused.Code}");
            Assert.True(refused.Detail?.StartsWith(entry + ":", StringComparison.Ordinal) == true, $"{policy}: '{refused.Detail}' does not name {entry}");
        }

        Assert.Equal(stored.Body.GetRawText(), (await api.GetPolicyAsync(tailnet)).Body.GetRawText());
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task With_tag_owners_a_key_may_carry_only_the_tags_named_there(Transport transport)
    {
        var api = Gateway.Over(transport);
        var tailnet = "owners-" + transport.ToString().ToLowerInvariant();
        Assert.Equal(HttpStatusCode.Created, (await api.TryCreateKeyAsync(true, true, true, ["tag:anything"], null, tailnet)).Status);
        Assert.Equal(HttpStatusCode.OK, (await api.SetPolicyAsync(Valid, tailnet)).Status);

        Assert.Equal(HttpStatusCode.Created, (await api.TryCreateKeyAsync(true, true, true, ["tag:ci", "tag:db"], null, tailnet)).Status);
        var refused = await api.TryCreateKeyAsync(true, true, true, ["tag:ci", "tag:anything"], null, tailnet);
        Assert.Equal((HttpStatusCode.BadRequest, "tag_not_owned"), (refused.Status, refused.Code));
        Assert.Equal(2, (await api.ListKeysAsync(tailnet)).Length);
    }
}
