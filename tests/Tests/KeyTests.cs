using System.Net;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>Auth keys, over HTTP and gRPC alike: single use under a race, expiry, revocation, wrong secrets, use counts, and the secret shown once.</summary>
public sealed class KeyTests : GatewayTest
{
    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task Fifty_concurrent_registrations_with_a_single_use_key_succeed_exactly_once(Transport transport)
    {
        var api = Gateway.Over(transport);
        var created = await api.CreateKeyAsync(reusable: false, ephemeral: true, tailnet: "race");
        var key = created.Str("key");
        var responses = await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => api.TryRegisterAsync(key)));

        Assert.Single(responses, r => r.Status == HttpStatusCode.OK);
        var refused = responses.Where(r => r.Status != HttpStatusCode.OK).ToArray();
        Assert.Equal(49, refused.Length);
        Assert.All(refused, r => Assert.Equal((HttpStatusCode.Forbidden, "key_used"), (r.Status, r.Code)));

        Assert.Single(await api.ListNodesAsync("race"));
        var listed = (await api.GetKeyAsync(created.Str("id"), "race")).Body;
        Assert.Equal(1, listed.GetProperty("uses").GetInt32());
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task Reusable_keys_count_uses_and_never_show_the_secret_again(Transport transport)
    {
        var api = Gateway.Over(transport);
        var created = await api.CreateKeyAsync(reusable: true, ephemeral: false, tags: ["tag:ci", "tag:build"], tailnet: "uses");
        Assert.StartsWith($"eo-auth-{created.Str("id")}-", created.Str("key"));
        for (var i = 0; i < 3; i++)
        {
            var (node, _) = await api.RegisterAsync(created.Str("key"), hostname: $"worker{i}");
            Assert.Equal(["tag:ci", "tag:build"], node.GetProperty("tags").EnumerateArray().Select(t => t.GetString()));
            Assert.False(node.GetProperty("ephemeral").GetBoolean());
            Assert.Equal(created.Str("id"), node.Str("keyId"));
        }

        var one = (await api.GetKeyAsync(created.Str("id"), "uses")).Body;
        Assert.Equal(3, one.GetProperty("uses").GetInt32());
        Assert.False(one.TryGetProperty("key", out _));
        var listed = Assert.Single(await api.ListKeysAsync("uses"));
        Assert.False(listed.TryGetProperty("key", out _));
        Assert.Equal(3, listed.GetProperty("uses").GetInt32());
        Assert.False(listed.GetProperty("revoked").GetBoolean());
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task Revoked_expired_and_wrong_secret_keys_are_refused_with_their_own_status(Transport transport)
    {
        var api = Gateway.Over(transport);
        var revoked = await api.CreateKeyAsync(tailnet: "refusals");
        Assert.Equal(HttpStatusCode.NoContent, (await api.RevokeKeyAsync(revoked.Str("id"), "refusals")).Status);
        await AssertRefusedAsync(api, revoked.Str("key"), HttpStatusCode.Forbidden, "key_revoked");
        var afterRevoke = (await api.GetKeyAsync(revoked.Str("id"), "refusals")).Body;
        Assert.True(afterRevoke.GetProperty("revoked").GetBoolean());

        var valid = await api.CreateKeyAsync(tailnet: "refusals");
        var wrongSecret = valid.Str("key")[..^4] + "AAAA";
        await AssertRefusedAsync(api, wrongSecret, HttpStatusCode.Unauthorized, "invalid_key");
        await AssertRefusedAsync(api, "eo-auth-doesnotexist-" + new string('A', 32), HttpStatusCode.Unauthorized, "invalid_key");
        await AssertRefusedAsync(api, "not-a-key", HttpStatusCode.Unauthorized, "invalid_key");

        var expiring = await api.CreateKeyAsync(expirySeconds: 1, tailnet: "refusals");
        await Poll.UntilAsync(async () =>
        {
            var reply = await api.TryRegisterAsync(expiring.Str("key"));
            return (reply.Status, reply.Code) == (HttpStatusCode.Forbidden, "key_expired");
        }, TimeSpan.FromSeconds(10), "the key to expire", everyMs: 200);

        // Refusals changed nothing: only the registrations made before expiry exist.
        var uses = ((await api.GetKeyAsync(expiring.Str("id"), "refusals")).Body).GetProperty("uses").GetInt32();
        Assert.Equal(uses, (await api.ListNodesAsync("refusals")).Length);
        Assert.Equal(0, ((await api.GetKeyAsync(valid.Str("id"), "refusals")).Body).GetProperty("uses").GetInt32());
    }

    private static async Task AssertRefusedAsync(ApiClient api, string key, HttpStatusCode status, string code)
    {
        var reply = await api.TryRegisterAsync(key);
        Assert.Equal((status, code), (reply.Status, reply.Code));
    }
}
