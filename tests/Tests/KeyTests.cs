using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>Auth keys: single use under a race, expiry, revocation, wrong secrets, use counts, and the secret shown once.</summary>
public sealed class KeyTests : GatewayTest
{
    [Fact]
    public async Task Fifty_concurrent_registrations_with_a_single_use_key_succeed_exactly_once()
    {
        var created = await Gateway.CreateKeyAsync(reusable: false, ephemeral: true, tailnet: "race");
        var key = created.Str("key");
        var responses = await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => Gateway.PostRegisterAsync(key)));

        Assert.Single(responses, r => r.StatusCode == HttpStatusCode.OK);
        var refused = responses.Where(r => r.StatusCode != HttpStatusCode.OK).ToArray();
        Assert.Equal(49, refused.Length);
        foreach (var response in refused)
        {
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            Assert.Equal("key_used", (await response.Content.ReadFromJsonAsync<JsonElement>()).Str("code"));
        }

        Assert.Single(await Gateway.ListNodesAsync("race"));
        var listed = await Gateway.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/tailnets/race/keys/{created.Str("id")}");
        Assert.Equal(1, listed.GetProperty("uses").GetInt32());
    }

    [Fact]
    public async Task Reusable_keys_count_uses_and_never_show_the_secret_again()
    {
        var created = await Gateway.CreateKeyAsync(reusable: true, ephemeral: false, tags: ["tag:ci", "tag:build"], tailnet: "uses");
        Assert.StartsWith($"eo-auth-{created.Str("id")}-", created.Str("key"));
        for (var i = 0; i < 3; i++)
        {
            var (node, _) = await Gateway.RegisterAsync(created.Str("key"), hostname: $"worker{i}");
            Assert.Equal(["tag:ci", "tag:build"], node.GetProperty("tags").EnumerateArray().Select(t => t.GetString()));
            Assert.False(node.GetProperty("ephemeral").GetBoolean());
            Assert.Equal(created.Str("id"), node.Str("keyId"));
        }

        var one = await Gateway.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/tailnets/uses/keys/{created.Str("id")}");
        Assert.Equal(3, one.GetProperty("uses").GetInt32());
        Assert.False(one.TryGetProperty("key", out _));
        var all = await Gateway.Admin.GetFromJsonAsync<JsonElement>("/api/v1/tailnets/uses/keys");
        var listed = Assert.Single(all.GetProperty("keys").EnumerateArray());
        Assert.False(listed.TryGetProperty("key", out _));
        Assert.Equal(3, listed.GetProperty("uses").GetInt32());
        Assert.False(listed.GetProperty("revoked").GetBoolean());
    }

    [Fact]
    public async Task Revoked_expired_and_wrong_secret_keys_are_refused_with_their_own_status()
    {
        var revoked = await Gateway.CreateKeyAsync(tailnet: "refusals");
        var revoke = await Gateway.Admin.DeleteAsync($"/api/v1/tailnets/refusals/keys/{revoked.Str("id")}");
        Assert.Equal(HttpStatusCode.NoContent, revoke.StatusCode);
        await AssertRefusedAsync(revoked.Str("key"), HttpStatusCode.Forbidden, "key_revoked");
        var afterRevoke = await Gateway.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/tailnets/refusals/keys/{revoked.Str("id")}");
        Assert.True(afterRevoke.GetProperty("revoked").GetBoolean());

        var valid = await Gateway.CreateKeyAsync(tailnet: "refusals");
        var wrongSecret = valid.Str("key")[..^4] + "AAAA";
        await AssertRefusedAsync(wrongSecret, HttpStatusCode.Unauthorized, "invalid_key");
        await AssertRefusedAsync("eo-auth-doesnotexist-" + new string('A', 32), HttpStatusCode.Unauthorized, "invalid_key");
        await AssertRefusedAsync("not-a-key", HttpStatusCode.Unauthorized, "invalid_key");

        var expiring = await Gateway.CreateKeyAsync(expirySeconds: 1, tailnet: "refusals");
        await Poll.UntilAsync(async () =>
        {
            var response = await Gateway.PostRegisterAsync(expiring.Str("key"));
            return response.StatusCode == HttpStatusCode.Forbidden
                && (await response.Content.ReadFromJsonAsync<JsonElement>()).Str("code") == "key_expired";
        }, TimeSpan.FromSeconds(10), "the key to expire", everyMs: 200);

        // Refusals changed nothing: only the registrations made before expiry exist.
        var uses = (await Gateway.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/tailnets/refusals/keys/{expiring.Str("id")}")).GetProperty("uses").GetInt32();
        Assert.Equal(uses, (await Gateway.ListNodesAsync("refusals")).Length);
        Assert.Equal(0, (await Gateway.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/tailnets/refusals/keys/{valid.Str("id")}")).GetProperty("uses").GetInt32());
    }

    private async Task AssertRefusedAsync(string key, HttpStatusCode status, string code)
    {
        var response = await Gateway.PostRegisterAsync(key);
        Assert.Equal(status, response.StatusCode);
        Assert.Equal(code, (await response.Content.ReadFromJsonAsync<JsonElement>()).Str("code"));
    }
}
