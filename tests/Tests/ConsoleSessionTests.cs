using System.Diagnostics;
using EphemeralOrleans.Tests.Infrastructure;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace EphemeralOrleans.Tests;

/// <summary>
/// Console sessions kept on the server, in a real browser: one ends at its lifetime however busy it is, survives a
/// restart of the gateway on PostgreSQL, and ends when the gateway comes back with another admin key.
/// </summary>
[Collection(TimingCollection.Name)]
public sealed class ConsoleSessionTests(BrowserFixture browser) : PostgresTest, IClassFixture<BrowserFixture>
{
    private static async Task<IPage> SignInAsync(IBrowserContext context, TestGateway gateway, string adminKey = TestGateway.AdminKey)
    {
        var page = await context.NewPageAsync();
        await page.GotoAsync(Url(gateway, "/admin/devices"));
        await page.FillAsync("#api-key", adminKey);
        await page.ClickAsync("button[type=submit]");
        await Expect(page.Locator("h1")).ToHaveTextAsync("Devices");
        return page;
    }

    private static string Url(TestGateway gateway, string path) => new Uri(gateway.Http.BaseAddress!, path).ToString();

    [BrowserFact]
    public async Task A_session_ends_at_its_lifetime_however_much_it_is_used()
    {
        var lifetime = TimeSpan.FromSeconds(5);
        await using var gateway = await TestGateway.StartAsync(new Dictionary<string, string?> { ["Console:Lifetime"] = lifetime.ToString() });
        var context = await browser.Browser.NewContextAsync();
        var clock = Stopwatch.StartNew(); // started before the sign-in: the session is no older than this
        var page = await SignInAsync(context, gateway);

        // Used every 250 ms, so the sliding expiry (8 h) never ends it; only its lifetime does.
        var usedWhileAlive = 0;
        while (true)
        {
            var at = clock.Elapsed;
            await page.GotoAsync(Url(gateway, "/admin/devices"));
            if (page.Url.Contains("/admin/signin", StringComparison.Ordinal))
            {
                Assert.True(at >= lifetime, $"signed out {at.TotalSeconds:F1} s after signing in, before its lifetime of {lifetime.TotalSeconds} s");
                break;
            }

            usedWhileAlive++;
            Assert.True(clock.Elapsed < lifetime + TimeSpan.FromSeconds(20), "the session outlived its lifetime");
            await Task.Delay(250);
        }

        Assert.True(usedWhileAlive >= 5, $"the session was used only {usedWhileAlive} times before it ended");
    }

    [Fact]
    public async Task Behind_a_proxy_that_terminates_TLS_the_cookies_are_Secure_when_configured()
    {
        var plain = await SignInCookiesSecureAsync(null);
        Assert.Equal(new[] { false, false }, plain);
        var behindProxy = await SignInCookiesSecureAsync("true"); // the session's cookie; not the anti-forgery one (see AdminConsole)
        Assert.Equal(new[] { false, true }, behindProxy);

        // The anti-forgery cookie of the sign-in form, then the session cookie of the sign-in: Secure or not.
        static async Task<bool[]> SignInCookiesSecureAsync(string? secureCookies)
        {
            await using var gateway = await TestGateway.StartAsync(new Dictionary<string, string?> { ["Console:SecureCookies"] = secureCookies });
            using var http = new HttpClient(new SocketsHttpHandler { UseCookies = false, AllowAutoRedirect = false }) { BaseAddress = gateway.Http.BaseAddress };
            using var form = await http.GetAsync("/admin/signin");
            var antiforgery = Assert.Single(form.Headers.GetValues("Set-Cookie"), c => c.StartsWith("eo-console-af=", StringComparison.Ordinal));
            var token = System.Text.RegularExpressions.Regex.Match(await form.Content.ReadAsStringAsync(), "name=\"__RequestVerificationToken\" type=\"hidden\" value=\"([^\"]+)\"").Groups[1].Value;
            using var signIn = new HttpRequestMessage(HttpMethod.Post, "/admin/signin")
            {
                Content = new FormUrlEncodedContent(new Dictionary<string, string> { ["ApiKey"] = TestGateway.AdminKey, ["__RequestVerificationToken"] = token }),
            };
            signIn.Headers.Add("Cookie", antiforgery.Split(';')[0]);
            using var signedIn = await http.SendAsync(signIn);
            Assert.Equal(System.Net.HttpStatusCode.Redirect, signedIn.StatusCode);
            var session = Assert.Single(signedIn.Headers.GetValues("Set-Cookie"), c => c.StartsWith("eo-console=", StringComparison.Ordinal));
            return [IsSecure(antiforgery), IsSecure(session)];
        }

        static bool IsSecure(string setCookie) => setCookie.Split(';').Any(a => a.Trim().Equals("secure", StringComparison.OrdinalIgnoreCase));
    }

    [BrowserPostgresFact]
    public async Task A_session_survives_a_restart_and_ends_when_the_admin_key_changes()
    {
        var settings = new Dictionary<string, string?>
        {
            ["Storage:Provider"] = "Postgres",
            ["ConnectionStrings:Postgres"] = await NewDatabaseAsync("console"),
        };
        var context = await browser.Browser.NewContextAsync();
        await using (var gateway = await TestGateway.StartAsync(settings))
        {
            await SignInAsync(context, gateway);
        }

        // Cookies are per host, not per port: the same browser visits the restarted gateway on its new port.
        await using (var restarted = await TestGateway.StartAsync(settings))
        {
            var page = await context.NewPageAsync();
            await page.GotoAsync(Url(restarted, "/admin/keys"));
            await Expect(page.Locator("h1")).ToHaveTextAsync("Auth keys");
        }

        const string newKey = "eo-admin-rotated-5Hs8Kd2Lq9Wf4Zx7";
        await using (var rekeyed = await TestGateway.StartAsync(new Dictionary<string, string?>(settings) { ["Admin:ApiKey"] = newKey }))
        {
            var page = await context.NewPageAsync();
            await page.GotoAsync(Url(rekeyed, "/admin/keys"));
            Assert.Contains("/admin/signin", page.Url);
            Assert.DoesNotContain(await context.CookiesAsync(), c => c.Name == "eo-console"); // the dead cookie is deleted
            await SignInAsync(context, rekeyed, newKey); // the new key opens a new session
        }
    }
}
