using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>Bad input gets a clear problem, never a 500, and changes nothing.</summary>
public sealed class BadInputTests : GatewayTest
{
    [Fact]
    public async Task Malformed_registrations_are_refused_with_problems_and_leave_nothing_behind()
    {
        var created = await Gateway.CreateKeyAsync(reusable: false, tailnet: "bad");
        var key = created.Str("key");

        await AssertProblemAsync(await PostRawAsync("{\"authKey\":", "application/json"), HttpStatusCode.BadRequest, "invalid_json");
        await AssertProblemAsync(await PostRawAsync("null", "application/json"), HttpStatusCode.BadRequest, "invalid_json");
        await AssertProblemAsync(await PostRawAsync("{\"authKey\":\"x\",\"ephemeral\":\"yes\"}", "application/json"), HttpStatusCode.BadRequest, "invalid_json");
        await AssertProblemAsync(await Gateway.PostRegisterAsync(key, nodeKey: "nodekey:1234"), HttpStatusCode.BadRequest, "invalid_node_key");
        await AssertProblemAsync(await Gateway.PostRegisterAsync(key, nodeKey: "nodekey:" + new string('g', 64)), HttpStatusCode.BadRequest, "invalid_node_key");
        await AssertProblemAsync(await Gateway.PostRegisterAsync(key, hostname: ""), HttpStatusCode.BadRequest, "invalid_hostname");
        var huge = JsonSerializer.Serialize(new { authKey = key, nodeKey = TestGateway.NewNodeKey(), hostname = new string('h', 200_000) });
        await AssertProblemAsync(await PostRawAsync(huge, "application/json"), HttpStatusCode.RequestEntityTooLarge, "body_too_large");

        // The single-use key survived all of that unused.
        Assert.Empty(await Gateway.ListNodesAsync("bad"));
        var listed = await Gateway.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/tailnets/bad/keys/{created.Str("id")}");
        Assert.Equal(0, listed.GetProperty("uses").GetInt32());
        await Gateway.RegisterAsync(key);
        await AssertProblemAsync(await Gateway.PostRegisterAsync(key), HttpStatusCode.Forbidden, "key_used");
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task A_trailing_newline_an_overflowing_number_or_a_lying_name_gets_a_refusal_or_is_cleaned_never_a_second_device(Transport transport)
    {
        var api = Gateway.Over(transport);
        var tailnet = $"input-{transport}".ToLowerInvariant();
        var key = (await api.CreateKeyAsync(ephemeral: false, tailnet: tailnet)).Str("key");
        var nodeKey = ApiClient.NewNodeKey();
        await api.RegisterAsync(key, nodeKey, "real");

        // $ matched before a final newline: this registered a second device with the same node key.
        AssertRefused(await api.TryRegisterAsync(key, nodeKey + "\n", "twin"), HttpStatusCode.BadRequest, "invalid_node_key");
        AssertRefused(await api.TryRegisterAsync(key + "\n", ApiClient.NewNodeKey()), HttpStatusCode.Unauthorized, "invalid_key");
        AssertRefused(await api.TryRegisterAsync(key, ApiClient.NewNodeKey(), "line\nbreak"), HttpStatusCode.BadRequest, "invalid_hostname");
        AssertRefused(await api.TryCreateKeyAsync(true, false, true, ["tag:ci\n"], null, tailnet), HttpStatusCode.BadRequest, "invalid_tag");
        AssertRefused(await api.TryCreateKeyAsync(true, false, true, [], long.MaxValue, tailnet), HttpStatusCode.BadRequest, "invalid_expiry");
        AssertRefused(await api.SetPolicyAsync("""{"acls":[{"action":"accept","src":["*"],"dst":["*: 22"]}]}""", tailnet), HttpStatusCode.BadRequest, "invalid_policy");

        // Bidi overrides and zero-width characters would make the console show another name: they are dropped.
        var (shown, _) = await api.RegisterAsync(key, ApiClient.NewNodeKey(), "pay\u202Epal\u200B");
        Assert.Equal(("paypal", "paypal"), (shown.Str("hostname"), shown.Str("name")));
        Assert.Single(await api.ListNodesAsync(tailnet), n => n.Str("nodeKey") == nodeKey);
        Assert.Equal(2, (await api.ListNodesAsync(tailnet)).Length);
    }

    [Fact]
    public async Task Unknown_or_missing_tokens_and_admin_keys_are_401_and_unknown_ids_404()
    {
        foreach (var token in new[] { null, "garbage", "aaaaaaaaaaaaaaaa-bbbbbbbb.secret", "" })
        {
            using var map = new HttpRequestMessage(HttpMethod.Get, "/api/v1/machine/map");
            if (token is not null)
            {
                map.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            }

            await AssertProblemAsync(await Gateway.Http.SendAsync(map), HttpStatusCode.Unauthorized, "invalid_token");
            Assert.Equal(HttpStatusCode.Unauthorized, await Gateway.LogoutAsync(token ?? "none"));
        }

        using var noAdmin = new HttpRequestMessage(HttpMethod.Get, "/api/v1/tailnets/-/nodes");
        await AssertProblemAsync(await Gateway.Http.SendAsync(noAdmin), HttpStatusCode.Unauthorized, "admin_key_required");
        using var wrongAdmin = new HttpRequestMessage(HttpMethod.Post, "/api/v1/tailnets/-/keys") { Content = JsonContent.Create(new { reusable = true }) };
        wrongAdmin.Headers.Authorization = new AuthenticationHeaderValue("Bearer", TestGateway.AdminKey + "x");
        await AssertProblemAsync(await Gateway.Http.SendAsync(wrongAdmin), HttpStatusCode.Unauthorized, "admin_key_required");

        await AssertProblemAsync(await Gateway.Admin.GetAsync("/api/v1/tailnets/-/nodes/aaaaaaaaaaaaaaaa-bbbbbbbb"), HttpStatusCode.NotFound, "node_not_found");
        await AssertProblemAsync(await Gateway.Admin.GetAsync("/api/v1/tailnets/-/nodes/not-an-id"), HttpStatusCode.NotFound, "node_not_found");
        await AssertProblemAsync(await Gateway.Admin.DeleteAsync("/api/v1/tailnets/-/nodes/not-an-id"), HttpStatusCode.NotFound, "node_not_found");
        await AssertProblemAsync(await Gateway.Admin.GetAsync("/api/v1/tailnets/-/keys/nosuchkey"), HttpStatusCode.NotFound, "key_not_found");
        await AssertProblemAsync(await Gateway.Admin.DeleteAsync("/api/v1/tailnets/-/keys/nosuchkey"), HttpStatusCode.NotFound, "key_not_found");
        await AssertProblemAsync(await Gateway.Admin.GetAsync("/api/v1/tailnets/Bad_Name/nodes"), HttpStatusCode.BadRequest, "invalid_tailnet");
        await AssertProblemAsync(await Gateway.Admin.PostAsJsonAsync("/api/v1/tailnets/-/keys", new { tags = new[] { "ci" } }), HttpStatusCode.BadRequest, "invalid_tag");
        await AssertProblemAsync(await Gateway.Admin.PostAsJsonAsync("/api/v1/tailnets/-/keys", new { expirySeconds = -5 }), HttpStatusCode.BadRequest, "invalid_expiry");
    }

    [Fact]
    public async Task A_node_of_one_tailnet_is_not_found_through_another()
    {
        var key = (await Gateway.CreateKeyAsync(tailnet: "blue")).Str("key");
        var (node, _) = await Gateway.RegisterAsync(key);
        Assert.NotNull(await Gateway.GetNodeAsync(node.Str("id"), "blue"));
        Assert.Null(await Gateway.GetNodeAsync(node.Str("id"), "green"));
        await AssertProblemAsync(await Gateway.Admin.DeleteAsync($"/api/v1/tailnets/green/nodes/{node.Str("id")}"), HttpStatusCode.NotFound, "node_not_found");
        Assert.NotNull(await Gateway.GetNodeAsync(node.Str("id"), "blue"));
    }

    [Theory]
    [InlineData(Transport.Http)]
    [InlineData(Transport.Grpc)]
    public async Task Refusals_carry_the_same_status_and_code_over_both_transports_and_change_nothing(Transport transport)
    {
        var api = Gateway.Over(transport);
        var tailnet = "parity-" + transport.ToString().ToLowerInvariant();
        var created = await api.CreateKeyAsync(reusable: false, tailnet: tailnet);
        var key = created.Str("key");

        AssertRefused(await api.TryRegisterAsync(key, nodeKey: "nodekey:1234"), HttpStatusCode.BadRequest, "invalid_node_key");
        AssertRefused(await api.TryRegisterAsync(key, hostname: " "), HttpStatusCode.BadRequest, "invalid_hostname");
        AssertRefused(await api.TryRegisterAsync("eo-auth-nosuchkey-" + new string('A', 32)), HttpStatusCode.Unauthorized, "invalid_key");
        AssertRefused(await api.TryOpenMapAsync("aaaaaaaaaaaaaaaa-bbbbbbbb.secret"), HttpStatusCode.Unauthorized, "invalid_token");
        Assert.Equal(HttpStatusCode.Unauthorized, await api.LogoutAsync("garbage"));
        AssertRefused(await api.TryGetNodeAsync("aaaaaaaaaaaaaaaa-bbbbbbbb", tailnet), HttpStatusCode.NotFound, "node_not_found");
        AssertRefused(await api.DeleteNodeAsync("not-an-id", tailnet), HttpStatusCode.NotFound, "node_not_found");
        AssertRefused(await api.ApproveNodeAsync("not-an-id", tailnet), HttpStatusCode.NotFound, "node_not_found");
        AssertRefused(await api.GetKeyAsync("nosuchkey", tailnet), HttpStatusCode.NotFound, "key_not_found");
        AssertRefused(await api.RevokeKeyAsync("nosuchkey", tailnet), HttpStatusCode.NotFound, "key_not_found");
        AssertRefused(await api.GetKeyAsync(created.Str("id"), "Bad_Name"), HttpStatusCode.BadRequest, "invalid_tailnet");
        AssertRefused(await api.TryCreateKeyAsync(true, true, true, ["ci"], null, tailnet), HttpStatusCode.BadRequest, "invalid_tag");
        AssertRefused(await api.TryCreateKeyAsync(true, true, true, [], -5, tailnet), HttpStatusCode.BadRequest, "invalid_expiry");

        // Nothing changed: no node, one key, unused; it still works exactly once.
        Assert.Empty(await api.ListNodesAsync(tailnet));
        Assert.Equal(0, Assert.Single(await api.ListKeysAsync(tailnet)).GetProperty("uses").GetInt32());
        await api.RegisterAsync(key);
        AssertRefused(await api.TryRegisterAsync(key), HttpStatusCode.Forbidden, "key_used");
    }

    private static void AssertRefused(Reply reply, HttpStatusCode status, string code) =>
        Assert.True((reply.Status, reply.Code) == (status, code), $"expected {status} {code}, got {reply.Status} {reply.Code}");

    private Task<HttpResponseMessage> PostRawAsync(string body, string contentType) =>
        Gateway.Http.PostAsync("/api/v1/machine/register", new StringContent(body, Encoding.UTF8, contentType));

    private static async Task AssertProblemAsync(HttpResponseMessage response, HttpStatusCode status, string code)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"expected {status}, got {(int)response.StatusCode}: {body}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal(code, JsonDocument.Parse(body).RootElement.Str("code"));
    }
}
