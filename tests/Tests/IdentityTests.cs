using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using EphemeralOrleans.Testing;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>
/// Workload identity: nodes join with an OIDC ID token from a real issuer of the test's own (Kestrel on loopback,
/// discovery and JWKS, RSA and EC keys) through a trust policy, and every kind of bad token is refused with its code,
/// registering nothing.
/// </summary>
[Collection(TimingCollection.Name)]
public sealed class IdentityTests : GatewayTest, IAsyncLifetime
{
    private const string Audience = "https://eo.test/ci";
    private const string Subject = "repo:acme/api:ref:refs/heads/main";
    private TestIssuer _issuer = null!;

    protected override IReadOnlyDictionary<string, string?>? Settings => new Dictionary<string, string?>
    {
        ["Identity:UnknownKeyRefreshInterval"] = "00:00:01",
    };

    async Task IAsyncLifetime.InitializeAsync()
    {
        await InitializeAsync();
        _issuer = await TestIssuer.StartAsync();
        Assert.Equal(HttpStatusCode.OK, (await Gateway.SetPolicyAsync("""{"tagOwners":{"tag:ci":[]},"acls":[{"action":"accept","src":["*"],"dst":["*:*"]}]}""")).Status);
    }

    public override async Task DisposeAsync()
    {
        await _issuer.DisposeAsync();
        await base.DisposeAsync();
    }

    [Fact]
    public async Task A_token_matching_a_trust_policy_registers_an_ephemeral_node_with_its_tags_which_inactivity_removes()
    {
        var policy = await CreatePolicyAsync(subject: "repo:acme/api:ref:refs/heads/*", claims: new Dictionary<string, string> { ["repository_owner"] = "acme" });
        var token = _issuer.Mint(Subject, Audience, claims: new Dictionary<string, object?> { ["repository_owner"] = "acme" });
        var registered = await Gateway.TryRegisterWithTokenAsync(token, hostname: "ci-job");
        Assert.True(registered.Status == HttpStatusCode.OK, $"{registered.Status} {registered.Code} {registered.Detail}");
        var node = registered.Body.GetProperty("node");
        Assert.True(node.GetProperty("ephemeral").GetBoolean());
        Assert.True(node.GetProperty("authorized").GetBoolean());
        Assert.Equal(["tag:ci"], node.GetProperty("tags").EnumerateArray().Select(t => t.GetString()));
        Assert.Equal("trust:" + policy, node.Str("keyId"));

        // Operators see which policy and which subject registered it.
        var listed = (await Gateway.GetNodeAsync(node.Str("id")))!.Value;
        Assert.Equal(Subject, listed.Str("subject"));

        // Over gRPC too; a refusal there is a gRPC status with the same code.
        var grpc = (GrpcClient)Gateway.Over(Transport.Grpc);
        var overGrpc = await grpc.TryRegisterWithTokenAsync(_issuer.Mint(Subject, Audience, claims: new Dictionary<string, object?> { ["repository_owner"] = "acme" }));
        Assert.True(overGrpc.Status == HttpStatusCode.OK, $"{overGrpc.Status} {overGrpc.Code} {overGrpc.Detail}");
        Assert.Equal("trust:" + policy, overGrpc.Body.GetProperty("node").Str("keyId"));
        Assert.Equal(Subject, (await grpc.GetNodeAsync(overGrpc.Body.GetProperty("node").Str("id")))!.Value.Str("subject"));
        var refusedOverGrpc = await grpc.TryRegisterWithTokenAsync(_issuer.Mint(Subject, "https://elsewhere"));
        Assert.Equal((HttpStatusCode.Unauthorized, "token_audience"), (refusedOverGrpc.Status, refusedOverGrpc.Code));

        // An ES256 token works as well.
        var ec = await Gateway.TryRegisterWithTokenAsync(_issuer.Mint(Subject, Audience, alg: "ES256", claims: new Dictionary<string, object?> { ["repository_owner"] = "acme" }));
        Assert.True(ec.Status == HttpStatusCode.OK, $"{ec.Status} {ec.Code} {ec.Detail}");

        // Ephemeral: gone after the inactivity timeout (2 s here) like any ephemeral node.
        await Poll.UntilAsync(async () => (await Gateway.ListNodesAsync()).Length == 0, TimeSpan.FromSeconds(30), "the token's nodes to be removed after inactivity");
    }

    [Fact]
    public async Task Every_bad_token_is_refused_with_its_code_and_registers_nothing()
    {
        var policy = await CreatePolicyAsync(subject: Subject, claims: new Dictionary<string, string> { ["environment"] = "prod" });
        var good = new Dictionary<string, object?> { ["environment"] = "prod" };
        var now = DateTimeOffset.UtcNow;
        using var stranger = RSA.Create(2048);
        var cases = new (string Name, string Token, HttpStatusCode Status, string Code)[]
        {
            ("not a JWT", "not.a.jwt", HttpStatusCode.Unauthorized, "token_malformed"),
            ("wrong audience", _issuer.Mint(Subject, "https://elsewhere", claims: good), HttpStatusCode.Unauthorized, "token_audience"),
            ("wrong issuer", _issuer.Mint(Subject, Audience, claims: new Dictionary<string, object?>(good) { ["iss"] = "https://evil.example" }), HttpStatusCode.Unauthorized, "token_issuer"),
            ("expired", _issuer.Mint(Subject, Audience, issuedAt: now.AddMinutes(-20), lifetime: TimeSpan.FromMinutes(10), claims: good), HttpStatusCode.Unauthorized, "token_expired"),
            ("not yet valid", _issuer.Mint(Subject, Audience, lifetime: TimeSpan.FromMinutes(30), claims: new Dictionary<string, object?>(good) { ["nbf"] = now.AddMinutes(10).ToUnixTimeSeconds() }), HttpStatusCode.Unauthorized, "token_not_yet_valid"),
            ("lifetime too long", _issuer.Mint(Subject, Audience, lifetime: TimeSpan.FromHours(3), claims: good), HttpStatusCode.Unauthorized, "token_lifetime"),
            ("no iat", _issuer.Mint(Subject, Audience, claims: new Dictionary<string, object?>(good) { ["iat"] = null }), HttpStatusCode.Unauthorized, "token_lifetime"),
            ("bad signature", _issuer.Mint(Subject, Audience, claims: good, signWith: stranger), HttpStatusCode.Unauthorized, "token_signature"),
            ("unknown kid", _issuer.Mint(Subject, Audience, claims: good, signWith: stranger, kid: "made-up"), HttpStatusCode.Unauthorized, "token_signature"),
            ("alg none", _issuer.MintUnsigned(Subject, Audience), HttpStatusCode.Unauthorized, "token_signature"),
            ("HS256 keyed with the public key", _issuer.MintHs256WithPublicKey(Subject, Audience), HttpStatusCode.Unauthorized, "token_signature"),
            ("subject mismatch", _issuer.Mint("repo:acme/api:ref:refs/heads/dev", Audience, claims: good), HttpStatusCode.Unauthorized, "token_subject"),
            ("claim mismatch", _issuer.Mint(Subject, Audience, claims: new Dictionary<string, object?> { ["environment"] = "staging" }), HttpStatusCode.Unauthorized, "token_subject"),
            ("claim missing", _issuer.Mint(Subject, Audience), HttpStatusCode.Unauthorized, "token_subject"),
        };
        foreach (var (name, token, status, code) in cases)
        {
            var reply = await Gateway.TryRegisterWithTokenAsync(token);
            Assert.True((status, code) == (reply.Status, reply.Code), $"{name}: {reply.Status} {reply.Code} {reply.Detail}");
            // The token is never echoed.
            if (token.Split('.') is [_, { Length: > 20 } payload, ..])
            {
                Assert.DoesNotContain(payload, reply.Detail ?? "");
            }
        }

        Assert.Empty(await Gateway.ListNodesAsync());

        // A token registers one node: replayed for another node key it is refused; its own node key gets its node back.
        var token1 = _issuer.Mint(Subject, Audience, claims: good);
        var nodeKey = ApiClient.NewNodeKey();
        var first = await Gateway.TryRegisterWithTokenAsync(token1, nodeKey);
        Assert.Equal(HttpStatusCode.OK, first.Status);
        var replayed = await Gateway.TryRegisterWithTokenAsync(token1);
        Assert.Equal((HttpStatusCode.Unauthorized, "token_replayed"), (replayed.Status, replayed.Code));
        var again = await Gateway.TryRegisterWithTokenAsync(token1, nodeKey, nodeToken: first.Body.Str("nodeToken"));
        Assert.True(again.Status == HttpStatusCode.OK, $"{again.Status} {again.Code} {again.Detail}");
        Assert.Equal(first.Body.GetProperty("node").Str("id"), again.Body.GetProperty("node").Str("id"));
        Assert.Single(await Gateway.ListNodesAsync());

        // A deleted policy registers nothing more; the node it registered stays.
        Assert.Equal(HttpStatusCode.NoContent, (await Gateway.Admin.DeleteAsync($"/api/v1/tailnets/-/trust-policies/{policy}")).StatusCode);
        var afterDelete = await Gateway.TryRegisterWithTokenAsync(_issuer.Mint(Subject, Audience, claims: good));
        Assert.Equal((HttpStatusCode.Unauthorized, "token_issuer"), (afterDelete.Status, afterDelete.Code));
        Assert.Single(await Gateway.ListNodesAsync());
    }

    [Fact]
    public async Task Rotated_issuer_keys_are_picked_up_and_an_issuer_that_is_down_is_a_clear_refusal_until_it_is_back()
    {
        await CreatePolicyAsync(subject: "repo:acme/*");
        Assert.Equal(HttpStatusCode.OK, (await Gateway.TryRegisterWithTokenAsync(_issuer.Mint("repo:acme/a", Audience))).Status);
        var fetched = _issuer.Requests;

        // The issuer rotates: the new kid is fetched once, without a restart; more tokens fetch nothing more.
        _issuer.Rotate();
        var rotated = await Gateway.TryRegisterWithTokenAsync(_issuer.Mint("repo:acme/b", Audience));
        Assert.True(rotated.Status == HttpStatusCode.OK, $"{rotated.Status} {rotated.Code} {rotated.Detail}");
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await Gateway.TryRegisterWithTokenAsync(_issuer.Mint($"repo:acme/c{i}", Audience))).Status);
        }

        Assert.InRange(_issuer.Requests - fetched, 1, 2);

        // A second issuer that is down before its keys were ever fetched: a clear refusal, nothing registered.
        await using var down = await TestIssuer.StartAsync();
        await down.StopAsync();
        var policy = await Gateway.TryCreateTrustPolicyAsync(new { issuer = down.Issuer, audiences = new[] { Audience }, subject = "*" });
        Assert.Equal(HttpStatusCode.Created, policy.Status);
        var before = (await Gateway.ListNodesAsync()).Length;
        var unavailable = await Gateway.TryRegisterWithTokenAsync(down.Mint("job", Audience));
        Assert.Equal((HttpStatusCode.FailedDependency, "issuer_unavailable"), (unavailable.Status, unavailable.Code));
        Assert.Equal(before, (await Gateway.ListNodesAsync()).Length);

        // Back: registrations work again.
        await down.StartAgainAsync();
        await Poll.UntilAsync(async () => (await Gateway.TryRegisterWithTokenAsync(down.Mint("job", Audience))).Status == HttpStatusCode.OK,
            TimeSpan.FromSeconds(30), "a registration once the issuer is back", everyMs: 500);
    }

    [Theory]
    [InlineData("grpc")]
    [InlineData("http")]
    public async Task An_agent_joins_with_an_id_token_and_no_auth_key_and_its_node_goes_when_it_stops(string transport)
    {
        var policy = await CreatePolicyAsync(subject: "repo:acme/*");
        var directory = Directory.CreateTempSubdirectory("eo-id-token-").FullName;
        try
        {
            var tokenFile = Path.Combine(directory, "token");
            await File.WriteAllTextAsync(tokenFile, _issuer.Mint("repo:acme/api", Audience) + "\n");
            await using var agent = AgentProcess.Start(["up", "--tun", "none", "--login-server", Gateway.Http.BaseAddress!.ToString(), "--hostname", "ci-job", "--json",
                "--socket", Path.Combine(directory, "agent.sock"), "--transport", transport, "--id-token-file", tokenFile]);
            var node = (await agent.WaitForEventAsync("registered", TimeSpan.FromSeconds(30))).GetProperty("node");
            Assert.True(node.GetProperty("ephemeral").GetBoolean());
            var listed = (await Gateway.GetNodeAsync(node.Str("id")))!.Value;
            Assert.Equal("trust:" + policy, listed.Str("keyId"));
            Assert.Equal("repo:acme/api", listed.Str("subject"));
            Assert.DoesNotContain(await File.ReadAllTextAsync(tokenFile), agent.Output.Replace("\n", ""));

            // Stopped: logged out, so the ephemeral node is removed at once.
            await agent.TerminateAsync();
            Assert.Equal(0, await agent.WaitForExitAsync(TimeSpan.FromSeconds(20)));
            await Poll.UntilAsync(async () => (await Gateway.ListNodesAsync()).Length == 0, TimeSpan.FromSeconds(10), "the node's removal on logout");
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }

        // In a GitHub Actions job: the agent asks the job's token endpoint for a token with the login server as audience.
        using var githubPolicy = await Gateway.Admin.PostAsJsonAsync("/api/v1/tailnets/-/trust-policies",
            new { issuer = _issuer.Issuer, audiences = new[] { Gateway.Http.BaseAddress!.ToString().TrimEnd('/') }, subject = _issuer.ActionsSubject });
        Assert.Equal(HttpStatusCode.Created, githubPolicy.StatusCode);
        var socket = Path.Combine(Path.GetTempPath(), $"eo-gh-{Guid.NewGuid():N}.sock");
        await using (var job = AgentProcess.Start(["up", "--tun", "none", "--login-server", Gateway.Http.BaseAddress!.ToString(), "--hostname", "gha", "--json",
            "--socket", socket, "--transport", transport, "--id-token-github"],
            new Dictionary<string, string> { ["ACTIONS_ID_TOKEN_REQUEST_URL"] = _issuer.ActionsRequestUrl, ["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = _issuer.ActionsRequestToken }))
        {
            var node = (await job.WaitForEventAsync("registered", TimeSpan.FromSeconds(30))).GetProperty("node");
            Assert.Equal(_issuer.ActionsSubject, (await Gateway.GetNodeAsync(node.Str("id")))!.Value.Str("subject"));
            await job.TerminateAsync();
            Assert.Equal(0, await job.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        }

        // Outside a job: one line, nothing registered.
        var (exitCode, output) = await AgentProcess.RunAsync(["up", "--tun", "none", "--login-server", Gateway.Http.BaseAddress!.ToString(), "--id-token-github"],
            TimeSpan.FromSeconds(20), new Dictionary<string, string> { ["ACTIONS_ID_TOKEN_REQUEST_URL"] = "", ["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = "" });
        Assert.Equal(2, exitCode);
        Assert.Contains("permissions: id-token: write", output);

        // A token and an auth key at once: one line, a usage exit, nothing registered.
        (exitCode, output) = await AgentProcess.RunAsync(["up", "--tun", "none", "--login-server", Gateway.Http.BaseAddress!.ToString(), "--auth-key", "eo-auth-x-y",
            "--id-token-github"], TimeSpan.FromSeconds(20));
        Assert.Equal(2, exitCode);
        Assert.Contains("one way to register", output);
    }

    [Fact]
    public async Task The_admin_cli_creates_lists_and_deletes_trust_policies()
    {
        var login = Gateway.Http.BaseAddress!.ToString();
        var admin = new Dictionary<string, string> { ["EO_ADMIN_KEY"] = GatewayClient.AdminKey };
        var within = TimeSpan.FromSeconds(30);
        var (exitCode, output) = await AgentProcess.RunAsync(["trust-policies", "create", "--login-server", login, "--issuer", _issuer.Issuer, "--audience", Audience,
            "--subject", "repo:acme/*", "--claim", "repository_owner=acme", "--tags", "tag:ci", "--description", "api-ci"], within, admin);
        Assert.True(exitCode == 0, output);
        var id = output.Trim();
        Assert.StartsWith("tp", id);

        (exitCode, output) = await AgentProcess.RunAsync(["trust-policies", "list", "--login-server", login], within, admin);
        Assert.True(exitCode == 0, output);
        Assert.Matches($@"(?m)^{id} +{System.Text.RegularExpressions.Regex.Escape(_issuer.Issuer)} +{System.Text.RegularExpressions.Regex.Escape(Audience)} +repo:acme/\* +repository_owner=acme +tag:ci +- +api-ci", output);
        Assert.Equal(HttpStatusCode.OK, (await Gateway.TryRegisterWithTokenAsync(_issuer.Mint("repo:acme/x", Audience, claims: new Dictionary<string, object?> { ["repository_owner"] = "acme" }))).Status);

        (exitCode, output) = await AgentProcess.RunAsync(["trust-policies", "create", "--login-server", login, "--issuer", _issuer.Issuer, "--audience", Audience,
            "--subject", "x", "--claim", "no-equals-sign"], within, admin);
        Assert.Equal(2, exitCode);
        Assert.Contains("--claim takes name=value", output);
        (exitCode, output) = await AgentProcess.RunAsync(["trust-policies", "create", "--login-server", login, "--issuer", "http://issuer.example", "--audience", Audience,
            "--subject", "x"], within, admin);
        Assert.NotEqual(0, exitCode);
        Assert.Contains("invalid_issuer", output);

        (exitCode, output) = await AgentProcess.RunAsync(["trust-policies", "delete", "api-ci", "--login-server", login], within, admin);
        Assert.True(exitCode == 0, output);
        Assert.Empty((await Gateway.Admin.GetFromJsonAsync<System.Text.Json.JsonElement>("/api/v1/tailnets/-/trust-policies")).GetProperty("trustPolicies").EnumerateArray());
    }

    [Fact]
    public async Task Trust_policies_are_validated_listed_updated_and_deleted()
    {
        foreach (var (body, code) in new (object, string)[]
        {
            (new { issuer = "http://issuer.example", audiences = new[] { Audience }, subject = "x" }, "invalid_issuer"),
            (new { issuer = "ftp://127.0.0.1", audiences = new[] { Audience }, subject = "x" }, "invalid_issuer"),
            (new { issuer = _issuer.Issuer, audiences = Array.Empty<string>(), subject = "x" }, "invalid_audience"),
            (new { issuer = _issuer.Issuer, audiences = new[] { Audience }, subject = "" }, "invalid_subject"),
            (new { issuer = _issuer.Issuer, audiences = new[] { Audience }, subject = "x", claims = new Dictionary<string, string> { ["sub"] = "y" } }, "invalid_claims"),
            (new { issuer = _issuer.Issuer, audiences = new[] { Audience }, subject = "x", tags = new[] { "tag:db" } }, "tag_not_owned"),
        })
        {
            var reply = await Gateway.TryCreateTrustPolicyAsync(body);
            Assert.True((HttpStatusCode.BadRequest, code) == (reply.Status, reply.Code), $"{code}: {reply.Status} {reply.Code} {reply.Detail}");
        }

        var id = await CreatePolicyAsync(subject: "repo:acme/*");
        var list = await Gateway.Admin.GetFromJsonAsync<System.Text.Json.JsonElement>("/api/v1/tailnets/-/trust-policies");
        var listed = Assert.Single(list.GetProperty("trustPolicies").EnumerateArray());
        Assert.Equal(id, listed.Str("id"));
        Assert.Equal(_issuer.Issuer, listed.Str("issuer"));

        // Needing approval means what a key that is not pre-authorized means: with device approval on, an admin approves.
        using var approval = await Gateway.Admin.PatchAsJsonAsync("/api/v1/tailnets/-/settings", new { deviceApproval = true });
        Assert.Equal(HttpStatusCode.OK, approval.StatusCode);
        using var update = await Gateway.Admin.PutAsJsonAsync($"/api/v1/tailnets/-/trust-policies/{id}",
            new { issuer = _issuer.Issuer, audiences = new[] { Audience }, subject = "repo:other/*", needsApproval = true });
        Assert.Equal(HttpStatusCode.OK, update.StatusCode);
        var other = await Gateway.TryRegisterWithTokenAsync(_issuer.Mint("repo:other/x", Audience));
        Assert.Equal(HttpStatusCode.OK, other.Status);
        Assert.False(other.Body.GetProperty("node").GetProperty("authorized").GetBoolean());
        Assert.Equal("token_subject", (await Gateway.TryRegisterWithTokenAsync(_issuer.Mint("repo:acme/x", Audience))).Code);

        Assert.Equal(HttpStatusCode.NoContent, (await Gateway.Admin.DeleteAsync($"/api/v1/tailnets/-/trust-policies/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await Gateway.Admin.DeleteAsync($"/api/v1/tailnets/-/trust-policies/{id}")).StatusCode);
    }

    private async Task<string> CreatePolicyAsync(string subject, Dictionary<string, string>? claims = null)
    {
        var reply = await Gateway.TryCreateTrustPolicyAsync(new { issuer = _issuer.Issuer, audiences = new[] { Audience }, subject, claims, tags = new[] { "tag:ci" }, description = "CI" });
        Assert.True(reply.Status == HttpStatusCode.Created, $"{reply.Status} {reply.Code} {reply.Detail}");
        return reply.Body.Str("id");
    }
}
