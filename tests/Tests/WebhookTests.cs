using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using EphemeralOrleans.Testing;
using EphemeralOrleans.Tests.Infrastructure;
using Xunit.Abstractions;

namespace EphemeralOrleans.Tests;

/// <summary>
/// Webhooks (issue 19) against a real receiver: a Node.js process that verifies every delivery with the
/// <c>standardwebhooks</c> npm library, which this project did not write. Retries, ordering, filters, pausing and the
/// refusals of bad endpoints.
/// </summary>
public sealed class WebhookTests(ITestOutputHelper log) : GatewayTest
{
    private static readonly TimeSpan Within = TimeSpan.FromSeconds(30);

    protected override IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Webhooks:FirstRetryDelay"] = "00:00:00.200",
        ["Webhooks:MaxRetryDelay"] = "00:00:01",
        ["Webhooks:AttemptTimeout"] = "00:00:02",
        ["Webhooks:PauseAfter"] = "00:00:05",
    };

    [Fact]
    public async Task A_receiver_down_for_a_while_then_up_gets_every_event_in_order_and_each_verifies_with_the_npm_library()
    {
        var port = FreePort.Next();
        var hook = await CreateAsync(new { url = $"http://127.0.0.1:{port}/hooks/eo", description = "chat" });
        await MakeEventsAsync(nodes: 8);

        // Nobody listens: deliveries fail, are retried, and the endpoint says so.
        await Poll.UntilAsync(async () => (await GetAsync(hook.Str("id"))).GetProperty("failingSince").ValueKind == JsonValueKind.String,
            Within, "the endpoint to report failures");
        await Poll.UntilAsync(async () => (await Gateway.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/tailnets/-/webhooks/{hook.Str("id")}/attempts"))
            .GetProperty("attempts").EnumerateArray().Any(a => a.Str("outcome") == "failed" && a.GetProperty("attempt").GetInt32() >= 3),
            Within, "the first event's third try");

        await using var receiver = await WebhookReceiver.StartAsync(port, hook.Str("secret"));
        var expected = await Gateway.AllEventsAsync();
        Assert.True(expected.Length >= 20, $"{expected.Length} events");
        await Poll.UntilAsync(() => Task.FromResult(DeliveredIds(receiver).Count >= expected.Length), Within, "every event to arrive",
            why: () => $"{DeliveredIds(receiver).Count} of {expected.Length}; {receiver.Errors}");

        var deliveries = receiver.Deliveries;
        Assert.All(deliveries, d => Assert.True(d.GetProperty("ok").GetBoolean(), d.GetRawText()));
        var firstArrivals = deliveries.Select(d => d.GetProperty("eventId").GetInt64()).Distinct().ToArray();
        // Each event of the log exactly (duplicates would be allowed: at least once), in the log's order.
        Assert.Equal(expected.Select(e => e.GetProperty("id").GetInt64()), firstArrivals);
        foreach (var (delivery, logged) in deliveries.DistinctBy(d => d.GetProperty("eventId").GetInt64()).Zip(expected))
        {
            Assert.Equal(logged.Str("type"), delivery.Str("type"));
            Assert.Equal($"evt_default_{logged.GetProperty("id").GetInt64()}", delivery.Str("id"));
            Assert.Equal(logged.GetProperty("data").GetRawText(), delivery.GetProperty("data").GetProperty("data").GetRawText());
        }

        log.WriteLine($"{expected.Length} events, {deliveries.Length} deliveries");
        await Poll.UntilAsync(async () => (await GetAsync(hook.Str("id"))).GetProperty("failingSince").ValueKind == JsonValueKind.Null,
            Within, "the endpoint to be healthy again");
        var healthy = await GetAsync(hook.Str("id"));
        Assert.Equal(expected[^1].GetProperty("id").GetInt64(), healthy.GetProperty("cursor").GetInt64());
        Assert.False(healthy.TryGetProperty("secret", out _));
    }

    [Fact]
    public async Task An_endpoint_gets_only_its_types_and_one_failing_for_long_is_paused_until_resumed()
    {
        var (removalsPort, failingPort) = (FreePort.Next(), FreePort.Next());
        var removals = await CreateAsync(new { url = $"http://127.0.0.1:{removalsPort}/", types = new[] { "node.removed" } });
        var failing = await CreateAsync(new { url = $"http://localhost:{failingPort}/", types = new[] { "node.*", "key.created" } });
        await using var removalsReceiver = await WebhookReceiver.StartAsync(removalsPort, removals.Str("secret"));
        var broken = await WebhookReceiver.StartAsync(failingPort, failing.Str("secret"), failStatus: 500);
        await MakeEventsAsync(nodes: 3);

        var removed = (await Gateway.AllEventsAsync(type: "node.removed")).Select(e => e.GetProperty("id").GetInt64()).ToArray();
        Assert.Equal(3, removed.Length);
        await Poll.UntilAsync(() => Task.FromResult(DeliveredIds(removalsReceiver).Count >= 3), Within, "the removals to arrive");
        Assert.Equal(removed, DeliveredIds(removalsReceiver));

        // 500 on every try: after PauseAfter (5 s) of failing, the endpoint is paused and tries no more.
        await Poll.UntilAsync(async () => (await GetAsync(failing.Str("id"))).GetProperty("paused").GetBoolean(), Within, "the failing endpoint to pause");
        var attempts = (await Gateway.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/tailnets/-/webhooks/{failing.Str("id")}/attempts"))
            .GetProperty("attempts").EnumerateArray().ToArray();
        Assert.All(attempts, a => Assert.Equal((("failed", 500)), (a.Str("outcome"), a.GetProperty("status").GetInt32())));
        Assert.True(broken.Deliveries.Length >= 3, $"{broken.Deliveries.Length} tries before the pause");
        await broken.DisposeAsync();
        await using var fixedReceiver = await WebhookReceiver.StartAsync(failingPort, failing.Str("secret"));
        await Task.Delay(TimeSpan.FromSeconds(2));
        Assert.Empty(fixedReceiver.Deliveries);

        using var resumed = await Gateway.Admin.PostAsync($"/api/v1/tailnets/-/webhooks/{failing.Str("id")}/resume", null);
        Assert.Equal(HttpStatusCode.OK, resumed.StatusCode);
        var wanted = (await Gateway.AllEventsAsync()).Where(e => e.Str("type").StartsWith("node.", StringComparison.Ordinal) || e.Str("type") == "key.created")
            .Select(e => e.GetProperty("id").GetInt64()).ToArray();
        await Poll.UntilAsync(() => Task.FromResult(DeliveredIds(fixedReceiver).Count >= wanted.Length), Within, "the paused endpoint's backlog");
        Assert.Equal(wanted, DeliveredIds(fixedReceiver));
        Assert.False((await GetAsync(failing.Str("id"))).GetProperty("paused").GetBoolean());
    }

    [Fact]
    public async Task Bad_endpoints_are_refused_with_their_code_and_nothing_is_created()
    {
        foreach (var (body, status, code) in new (object, HttpStatusCode, string)[]
        {
            (new { }, HttpStatusCode.BadRequest, "invalid_url"),
            (new { url = "not a url" }, HttpStatusCode.BadRequest, "invalid_url"),
            (new { url = "ftp://example.com/hook" }, HttpStatusCode.BadRequest, "invalid_url"),
            (new { url = "http://example.com/hook" }, HttpStatusCode.BadRequest, "invalid_url"),
            (new { url = "https://user:pw@example.com/hook" }, HttpStatusCode.BadRequest, "invalid_url"),
            (new { url = "http://169.254.169.254/latest/meta-data/" }, HttpStatusCode.BadRequest, "forbidden_address"),
            (new { url = "https://169.254.169.254/" }, HttpStatusCode.BadRequest, "forbidden_address"),
            (new { url = "https://[fe80::1]/hook" }, HttpStatusCode.BadRequest, "forbidden_address"),
            (new { url = "https://[::ffff:169.254.169.254]/" }, HttpStatusCode.BadRequest, "forbidden_address"),
            (new { url = "https://metadata.google.internal/computeMetadata/v1/" }, HttpStatusCode.BadRequest, "forbidden_address"),
            (new { url = "https://0.0.0.0/" }, HttpStatusCode.BadRequest, "forbidden_address"),
            (new { url = "https://hooks.example.com/", types = new[] { "node.exploded" } }, HttpStatusCode.BadRequest, "unknown_event_type"),
            (new { url = "https://hooks.example.com/", description = "bell\u0007" }, HttpStatusCode.BadRequest, "invalid_description"),
        })
        {
            using var response = await Gateway.Admin.PostAsJsonAsync("/api/v1/tailnets/-/webhooks", body);
            var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
            Assert.True((response.StatusCode, problem.Str("code")) == (status, code), $"{JsonSerializer.Serialize(body)}: {response.StatusCode} {problem}");
        }

        using (var huge = await Gateway.Admin.PostAsync("/api/v1/tailnets/-/webhooks",
            new StringContent($$"""{"url":"https://hooks.example.com/","description":"{{new string('a', 70_000)}}"}""", Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, huge.StatusCode);
        }

        using (var missing = await Gateway.Admin.GetAsync("/api/v1/tailnets/-/webhooks/whnosuchhook"))
        {
            Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        }

        var list = await Gateway.Admin.GetFromJsonAsync<JsonElement>("/api/v1/tailnets/-/webhooks");
        Assert.Empty(list.GetProperty("webhooks").EnumerateArray());

        // A good one: its secret is shown once, in the Standard Webhooks form, and never listed.
        var created = await CreateAsync(new { url = "https://hooks.example.com/eo", types = new[] { "node.*" } });
        Assert.StartsWith("whsec_", created.Str("secret"));
        Assert.Equal(24, Convert.FromBase64String(created.Str("secret")["whsec_".Length..]).Length);
        var listed = Assert.Single((await Gateway.Admin.GetFromJsonAsync<JsonElement>("/api/v1/tailnets/-/webhooks")).GetProperty("webhooks").EnumerateArray());
        Assert.DoesNotContain(created.Str("secret"), listed.GetRawText());
        using var deleted = await Gateway.Admin.DeleteAsync($"/api/v1/tailnets/-/webhooks/{created.Str("id")}");
        Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
    }

    /// <summary>Keys and nodes coming and going: registrations, renames, logouts (removals and releases).</summary>
    private async Task MakeEventsAsync(int nodes)
    {
        var key = (await Gateway.CreateKeyAsync(reusable: true, ephemeral: true)).Str("key");
        var tokens = new List<string>();
        for (var i = 0; i < nodes; i++)
        {
            tokens.Add((await Gateway.RegisterAsync(key, hostname: $"job-{i}")).Token);
        }

        foreach (var token in tokens)
        {
            Assert.Equal(HttpStatusCode.NoContent, await Gateway.LogoutAsync(token));
        }
    }

    private async Task<JsonElement> CreateAsync(object body)
    {
        using var response = await Gateway.Admin.PostAsJsonAsync("/api/v1/tailnets/-/webhooks", body);
        var json = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.True(response.StatusCode == HttpStatusCode.Created, json.GetRawText());
        return json;
    }

    private async Task<JsonElement> GetAsync(string id) => await Gateway.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/tailnets/-/webhooks/{id}");

    private static List<long> DeliveredIds(WebhookReceiver receiver) =>
        receiver.Deliveries.Where(d => d.GetProperty("ok").GetBoolean()).Select(d => d.GetProperty("eventId").GetInt64()).Distinct().ToList();
}
