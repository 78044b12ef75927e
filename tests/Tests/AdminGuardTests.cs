using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using EphemeralOrleans.Protocol.V1;
using EphemeralOrleans.Testing;
using EphemeralOrleans.Tests.Infrastructure;
using Grpc.Core;
using Grpc.Net.Client;
using Xunit.Abstractions;

namespace EphemeralOrleans.Tests;

/// <summary>
/// Guessing the admin key: one address that keeps presenting wrong keys is throttled on every surface at once — console
/// sign-in, admin API over HTTP and gRPC — with 429 / RESOURCE_EXHAUSTED and the time to wait, while another address
/// presenting the right key is let in at once. Each client binds its own loopback address (127.0.0.x) as its source.
/// Run alone: whether the attacker is still throttled when it tries the right key depends on the guessing loop's pace,
/// which a flood test beside it once slowed past the first wait.
/// </summary>
[Collection(TimingCollection.Name)]
public sealed class AdminGuardTests(ITestOutputHelper log) : GatewayTest
{
    [Fact]
    public async Task A_thousand_wrong_keys_from_one_address_are_throttled_and_another_address_signs_in_at_once()
    {
        using var attacker = From("127.0.0.11");
        var form = await SignInFormAsync(attacker);
        var statuses = new Dictionary<HttpStatusCode, int>();
        var clock = Stopwatch.StartNew();
        string? retryAfter = null;
        for (var i = 0; i < 1000; i++)
        {
            using var response = await PostSignInAsync(attacker, form, $"eo-admin-guess-{i}");
            statuses[response.StatusCode] = statuses.GetValueOrDefault(response.StatusCode) + 1;
            retryAfter ??= response.Headers.RetryAfter?.Delta?.TotalSeconds.ToString();
        }

        var elapsed = clock.Elapsed;
        log.WriteLine($"1,000 wrong keys in {elapsed.TotalSeconds:F1} s: {string.Join(", ", statuses.Select(s => $"{(int)s.Key} ×{s.Value}"))}; first Retry-After {retryAfter} s");
        Assert.True(statuses.GetValueOrDefault(HttpStatusCode.TooManyRequests) >= 950, "too few throttled");
        Assert.Equal(1000, statuses.GetValueOrDefault(HttpStatusCode.TooManyRequests) + statuses.GetValueOrDefault(HttpStatusCode.Unauthorized));
        Assert.NotNull(retryAfter);
        Assert.True(elapsed < TimeSpan.FromSeconds(60), $"the guesses took {elapsed}");

        // Throttled, the attacker's address is not even compared: the right key waits too, on every surface.
        using (var right = await PostSignInAsync(attacker, form, TestGateway.AdminKey))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, right.StatusCode);
            Assert.Contains("Too many wrong keys from this address", await right.Content.ReadAsStringAsync());
        }

        using (var api = await GetKeysAsync(attacker, TestGateway.AdminKey))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, api.StatusCode);
            Assert.Contains("too_many_attempts", await api.Content.ReadAsStringAsync());
            Assert.True(api.Headers.RetryAfter?.Delta > TimeSpan.Zero);
        }

        // Another address, the right key: in at once.
        using var admin = From("127.0.0.12");
        var adminForm = await SignInFormAsync(admin);
        clock.Restart();
        using (var signedIn = await PostSignInAsync(admin, adminForm, TestGateway.AdminKey))
        {
            Assert.Equal(HttpStatusCode.Redirect, signedIn.StatusCode);
            Assert.Contains(signedIn.Headers.GetValues("Set-Cookie"), c => c.StartsWith("eo-console=", StringComparison.Ordinal));
        }

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"the admin waited {clock.Elapsed}");
        using (var api = await GetKeysAsync(admin, TestGateway.AdminKey))
        {
            Assert.Equal(HttpStatusCode.OK, api.StatusCode);
        }

        var metrics = await admin.GetStringAsync("/metrics");
        Assert.True(Counter(metrics, "console", "throttled") >= 950, "throttled sign-ins counted");
        Assert.True(Counter(metrics, "console", "refused") >= 5, "refused sign-ins counted");
    }

    [Fact]
    public async Task The_admin_log_records_failed_and_good_sign_ins_throttling_and_each_new_address_once()
    {
        using var guesser = From("127.0.0.21");
        var form = await SignInFormAsync(guesser);
        for (var i = 0; i < 7; i++)
        {
            using var _ = await PostSignInAsync(guesser, form, $"eo-admin-guess-{i}");
        }

        using var admin = From("127.0.0.22");
        var adminForm = await SignInFormAsync(admin);
        using (var signedIn = await PostSignInAsync(admin, adminForm, TestGateway.AdminKey))
        {
            Assert.Equal(HttpStatusCode.Redirect, signedIn.StatusCode);
        }

        for (var i = 0; i < 3; i++)
        {
            using var keys = await GetKeysAsync(admin, TestGateway.AdminKey);
            Assert.Equal(HttpStatusCode.OK, keys.StatusCode);
        }

        using var other = From("127.0.0.23");
        using (var keys = await GetKeysAsync(other, TestGateway.AdminKey))
        {
            Assert.Equal(HttpStatusCode.OK, keys.StatusCode);
        }

        // Recorded off the request path: poll until the log has caught up.
        System.Text.Json.JsonElement[] events = [];
        await Poll.UntilAsync(async () =>
        {
            var page = await Gateway.Admin.GetFromJsonAsync<System.Text.Json.JsonElement>("/api/v1/admin/events?limit=1000");
            events = page.GetProperty("events").EnumerateArray().ToArray();
            return events.Count(e => e.Str("type") == "admin.new_address") >= 3 && events.Any(e => e.Str("type") == "admin.signed_in");
        }, TimeSpan.FromSeconds(10), "the admin log");

        string Address(System.Text.Json.JsonElement e) => e.GetProperty("data").Str("address");
        // 5 refusals count, the 6th starts the throttle; throttled tries are not compared, so not recorded one by one.
        Assert.Equal(6, events.Count(e => e.Str("type") == "admin.sign_in_failed" && Address(e) == "127.0.0.21"));
        Assert.Single(events, e => e.Str("type") == "admin.throttled" && Address(e) == "127.0.0.21");
        Assert.Single(events, e => e.Str("type") == "admin.signed_in" && Address(e) == "127.0.0.22");
        // Each address once, however often it comes back (the test client's own address is the third).
        Assert.Single(events, e => e.Str("type") == "admin.new_address" && Address(e) == "127.0.0.22");
        Assert.Single(events, e => e.Str("type") == "admin.new_address" && Address(e) == "127.0.0.23");
        Assert.DoesNotContain(events, e => e.GetRawText().Contains("eo-admin-guess") || e.GetRawText().Contains(TestGateway.AdminKey));
        // The tailnet's own log has none of it.
        Assert.DoesNotContain(await Gateway.AllEventsAsync(), e => e.Str("type").StartsWith("admin.", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Over_gRPC_a_guessing_address_gets_RESOURCE_EXHAUSTED_with_the_time_to_wait()
    {
        using var channel = GrpcChannel.ForAddress(Gateway.GrpcUrl, new GrpcChannelOptions { HttpHandler = LoopbackSource.Handler("127.0.0.13") });
        var admin = new AdminService.AdminServiceClient(channel);
        var codes = new List<StatusCode>();
        RpcException? throttled = null;
        for (var i = 0; i < 8; i++)
        {
            try
            {
                await admin.ListKeysAsync(new ListKeysRequest(), GrpcClient.Bearer($"eo-admin-guess-{i}"));
            }
            catch (RpcException exception)
            {
                codes.Add(exception.StatusCode);
                throttled ??= exception.StatusCode == StatusCode.ResourceExhausted ? exception : null;
            }
        }

        Assert.Equal(Enumerable.Repeat(StatusCode.Unauthenticated, 5), codes.Take(5));
        Assert.NotNull(throttled);
        var status = throttled.GetRpcStatus()!;
        Assert.Equal("too_many_attempts", status.GetDetail<Google.Rpc.ErrorInfo>()!.Reason);
        Assert.True(status.GetDetail<Google.Rpc.RetryInfo>()!.RetryDelay.ToTimeSpan() > TimeSpan.Zero);

        // The HTTP API of another address is not affected.
        using var other = From("127.0.0.14");
        using var keys = await GetKeysAsync(other, TestGateway.AdminKey);
        Assert.Equal(HttpStatusCode.OK, keys.StatusCode);
    }

    [Theory]
    [InlineData("short12345", "it has 10 characters; at least 32 are needed")]
    [InlineData("abcabcabcabcabcabcabcabcabcabcabcabc", "only 3 distinct characters")]
    public async Task A_gateway_given_a_weak_admin_key_refuses_to_start_with_one_line_that_does_not_echo_it(string key, string says)
    {
        var (exitCode, stdout, stderr) = await EphemeralOrleans.Testing.HostProcess.RunToExitAsync("Gateway", ["--Admin:ApiKey=" + key], TimeSpan.FromSeconds(60));
        Assert.Equal(2, exitCode);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("error: Admin:ApiKey is too weak: ", line);
        Assert.Contains(says, line);
        Assert.DoesNotContain(key, line + stdout);
    }

    private HttpClient From(string source) => new(LoopbackSource.Handler(source)) { BaseAddress = Gateway.Http.BaseAddress };

    private sealed record SignInForm(string Cookie, string Token);

    private static async Task<SignInForm> SignInFormAsync(HttpClient client)
    {
        using var page = await client.GetAsync("/admin/signin");
        var cookie = page.Headers.GetValues("Set-Cookie").Single(c => c.StartsWith("eo-console-af=", StringComparison.Ordinal)).Split(';')[0];
        var token = Regex.Match(await page.Content.ReadAsStringAsync(), "name=\"__RequestVerificationToken\" type=\"hidden\" value=\"([^\"]+)\"").Groups[1].Value;
        return new SignInForm(cookie, token);
    }

    private static Task<HttpResponseMessage> PostSignInAsync(HttpClient client, SignInForm form, string key)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/admin/signin")
        {
            Content = new FormUrlEncodedContent(new Dictionary<string, string> { ["ApiKey"] = key, ["__RequestVerificationToken"] = form.Token }),
        };
        request.Headers.Add("Cookie", form.Cookie);
        return client.SendAsync(request);
    }

    private static Task<HttpResponseMessage> GetKeysAsync(HttpClient client, string key)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/tailnets/-/keys");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client.SendAsync(request);
    }

    private static double Counter(string metrics, string surface, string outcome) =>
        Regex.Matches(metrics, @"^eo_gateway_admin_auth_failures_total\{([^}]*)\} (\S+)", RegexOptions.Multiline)
            .Where(m => m.Groups[1].Value.Contains($"surface=\"{surface}\"") && m.Groups[1].Value.Contains($"outcome=\"{outcome}\""))
            .Sum(m => double.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
}
