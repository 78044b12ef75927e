using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using EphemeralOrleans.Tests.Infrastructure;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace EphemeralOrleans.Tests;

/// <summary>One headless Chromium for the console tests.</summary>
public sealed class BrowserFixture : IAsyncLifetime
{
    private IPlaywright? _playwright;
    private IBrowser? _browser;

    public IBrowser Browser => _browser ?? throw new InvalidOperationException($"No Chromium at {BrowserFactAttribute.ChromiumPath}: the console tests need it (apt-get install chromium).");

    /// <summary>Screenshots of each page, as test output (not committed).</summary>
    public static string ScreenshotDirectory { get; } = Path.Combine(AppContext.BaseDirectory, "screenshots");

    public async Task InitializeAsync()
    {
        if (!File.Exists(BrowserFactAttribute.ChromiumPath))
        {
            return; // every fact is skipped (or, in CI, fails on its own)
        }

        SetDefaultExpectTimeout(15_000);
        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new()
        {
            ExecutablePath = BrowserFactAttribute.ChromiumPath,
            Headless = true,
            // Root has no Chromium sandbox; /dev/shm is small in containers.
            Args = ["--no-sandbox", "--disable-dev-shm-usage"],
        });
    }

    public async Task DisposeAsync()
    {
        if (_browser is not null)
        {
            await _browser.DisposeAsync();
        }

        _playwright?.Dispose();
    }
}

/// <summary>The admin web console in a real browser against a real gateway: sign-in, keys, live devices, approval,
/// policy, anti-forgery, narrow screens. Run alone: a browser's navigations timed out (30 s) twice in CI runs while
/// the machine's two cores also served parallel gateway, agent and WireGuard tests.</summary>
[Collection(TimingCollection.Name)]
public sealed class ConsoleTests(BrowserFixture browser) : GatewayTest, IClassFixture<BrowserFixture>
{
    // Nodes must not be removed for inactivity while a test looks at them.
    protected override IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Ephemeral:InactivityTimeout"] = "00:02:00",
        ["Console:LiveSessionCheck"] = "00:00:01",
    };

    private string Url(string path) => new Uri(Gateway.Http.BaseAddress!, path).ToString();

    private async Task<IPage> SignedInPageAsync(int width = 1280)
    {
        var context = await browser.Browser.NewContextAsync(new() { ViewportSize = new() { Width = width, Height = 900 } });
        var page = await context.NewPageAsync();
        await page.GotoAsync(Url("/admin/devices"));
        await page.FillAsync("#api-key", TestGateway.AdminKey);
        await page.ClickAsync("button[type=submit]");
        await Expect(page.Locator("h1")).ToHaveTextAsync("Devices");
        await page.WaitForLoadStateAsync(LoadState.Load); // the page's script is attached
        return page;
    }

    private static async Task ScreenshotAsync(IPage page, string name)
    {
        Directory.CreateDirectory(BrowserFixture.ScreenshotDirectory);
        await page.ScreenshotAsync(new() { Path = Path.Combine(BrowserFixture.ScreenshotDirectory, name + ".png"), FullPage = true });
    }

    [BrowserFact]
    public async Task A_wrong_key_cannot_sign_in_and_the_admin_key_can()
    {
        var context = await browser.Browser.NewContextAsync();
        var page = await context.NewPageAsync();

        await page.GotoAsync(Url("/admin/keys"));
        Assert.Contains("/admin/signin", page.Url);
        await ScreenshotAsync(page, "signin");

        await page.FillAsync("#api-key", "eo-admin-not-the-key");
        await page.ClickAsync("button[type=submit]");
        await Expect(page.Locator("#signin-error")).ToContainTextAsync("not the admin API key");
        Assert.DoesNotContain(await context.CookiesAsync(), c => c.Name == "eo-console");

        await page.FillAsync("#api-key", TestGateway.AdminKey);
        await page.ClickAsync("button[type=submit]");
        await Expect(page.Locator("h1")).ToHaveTextAsync("Auth keys"); // back where it was sent from
        var session = Assert.Single(await context.CookiesAsync(), c => c.Name == "eo-console");
        Assert.True(session.HttpOnly);
        Assert.Equal(SameSiteAttribute.Strict, session.SameSite);
        Assert.DoesNotContain(TestGateway.AdminKey, session.Value);

        await page.ClickAsync("text=Sign out");
        await Expect(page.Locator("h1")).ToHaveTextAsync("Sign in");
        await page.GotoAsync(Url("/admin/devices"));
        Assert.Contains("/admin/signin", page.Url);
    }

    [BrowserFact]
    public async Task Signing_out_ends_the_session_for_a_copy_of_its_cookie_too()
    {
        var page = await SignedInPageAsync();
        await page.ClickAsync("nav >> text=Auth keys");
        await page.FillAsync("#Input_Description", "after sign-out");
        var stolen = Assert.Single(await page.Context.CookiesAsync(), c => c.Name == "eo-console");

        // Signed out in another tab; then the copy (as a thief kept it) is put back and the form still open is sent.
        var other = await page.Context.NewPageAsync();
        await other.GotoAsync(Url("/admin/devices"));
        await other.ClickAsync("text=Sign out");
        await Expect(other.Locator("h1")).ToHaveTextAsync("Sign in");
        Assert.DoesNotContain(await page.Context.CookiesAsync(), c => c.Name == "eo-console");
        await page.Context.AddCookiesAsync([new Microsoft.Playwright.Cookie { Name = stolen.Name, Value = stolen.Value, Domain = stolen.Domain, Path = stolen.Path }]);
        await page.ClickAsync("text=Create key");
        await Expect(page.Locator("h1")).ToHaveTextAsync("Sign in");
        Assert.Empty(await Gateway.ListKeysAsync());
        await page.GotoAsync(Url("/admin/keys"));
        Assert.Contains("/admin/signin", page.Url);
    }

    [BrowserFact]
    public async Task An_open_device_list_stops_following_the_fleet_when_its_session_is_signed_out_elsewhere()
    {
        var page = await SignedInPageAsync();
        var other = await page.Context.NewPageAsync();
        await other.GotoAsync(Url("/admin/keys"));
        await other.ClickAsync("text=Sign out");
        await Expect(other.Locator("h1")).ToHaveTextAsync("Sign in");

        // The open list's stream was authenticated when it opened; it notices within Console:LiveSessionCheck and the
        // page goes to the sign-in form by itself (nothing is clicked or navigated there).
        await Expect(page.Locator("h1")).ToHaveTextAsync("Sign in", new() { Timeout = 15_000 });
    }

    [BrowserFact]
    public async Task An_ephemeral_key_is_created_its_secret_shown_once_and_it_can_be_revoked()
    {
        var page = await SignedInPageAsync();
        await page.ClickAsync("nav >> text=Auth keys");
        await page.FillAsync("#Input_Description", "ci fleet");
        await page.FillAsync("#Input_Tags", "tag:ci");
        await Expect(page.Locator("#Input_Ephemeral")).ToBeCheckedAsync();
        await page.CheckAsync("#Input_Reusable");
        await page.ClickAsync("text=Create key");

        var secretBox = page.Locator("#new-key");
        await Expect(secretBox).ToHaveValueAsync(new System.Text.RegularExpressions.Regex("^eo-auth-"));
        var secret = await secretBox.InputValueAsync();
        await Expect(page.Locator("#Input_Description")).ToHaveValueAsync(""); // a fresh form for the next key
        await ScreenshotAsync(page, "keys-created");

        // The secret shown is the real one: it registers an ephemeral, tagged node.
        var (node, _) = await Gateway.RegisterAsync(secret, hostname: "from-console-key");
        Assert.True(node.GetProperty("ephemeral").GetBoolean());
        Assert.Equal(["tag:ci"], node.GetProperty("tags").EnumerateArray().Select(t => t.GetString()));

        // Once: a reload shows the list, not the secret.
        await page.ReloadAsync();
        await Expect(page.Locator("h1")).ToHaveTextAsync("Auth keys");
        Assert.Equal(0, await page.Locator("#new-key").CountAsync());
        Assert.DoesNotContain(secret, await page.ContentAsync());
        var keyId = secret.Split('-')[2];
        var row = page.Locator($"tr[data-key='{keyId}']");
        await Expect(row.Locator(".uses")).ToHaveTextAsync("1");
        await Expect(row).ToContainTextAsync("Ephemeral");
        await Expect(row).ToContainTextAsync("ci fleet");
        await ScreenshotAsync(page, "keys");

        page.Dialog += async (_, dialog) => await dialog.AcceptAsync();
        await row.Locator("text=Revoke").ClickAsync();
        await Expect(row.Locator(".state")).ToHaveTextAsync("Revoked");
        var refused = await Gateway.TryRegisterAsync(secret, hostname: "after-revoke");
        Assert.Equal("key_revoked", refused.Code);
    }

    [BrowserFact]
    public async Task A_trust_policy_is_created_listed_and_deleted_from_the_console()
    {
        var page = await SignedInPageAsync();
        await page.ClickAsync("nav >> text=Trust policies");
        await Expect(page.Locator("h1")).ToHaveTextAsync("Trust policies");

        // A plain-http issuer elsewhere than loopback: refused beside the form, nothing created.
        await page.FillAsync("#Input_Issuer", "http://issuer.example");
        await page.FillAsync("#Input_Audiences", "https://eo.test");
        await page.FillAsync("#Input_Subject", "repo:acme/*");
        await page.ClickAsync("text=Create trust policy");
        await Expect(page.Locator("#create-error")).ToContainTextAsync("https");

        await page.FillAsync("#Input_Issuer", "https://token.actions.githubusercontent.com");
        await page.FillAsync("#Input_Audiences", "https://eo.test");
        await page.FillAsync("#Input_Subject", "repo:acme/*");
        await page.FillAsync("#Input_Claims", "repository_owner=acme");
        await page.FillAsync("#Input_Description", "api ci");
        await page.ClickAsync("text=Create trust policy");
        var row = page.Locator("tr[data-policy]");
        await Expect(row).ToContainTextAsync("repo:acme/*");
        await Expect(row).ToContainTextAsync("repository_owner = acme");
        await Expect(row).ToContainTextAsync("api ci");
        await ScreenshotAsync(page, "trust-policies");
        var listed = await Gateway.Admin.GetFromJsonAsync<System.Text.Json.JsonElement>("/api/v1/tailnets/-/trust-policies");
        var policy = Assert.Single(listed.GetProperty("trustPolicies").EnumerateArray());
        Assert.Equal("acme", policy.GetProperty("claims").GetProperty("repository_owner").GetString());

        page.Dialog += async (_, dialog) => await dialog.AcceptAsync();
        await row.Locator("text=Delete").ClickAsync();
        await Expect(page.Locator("tr[data-policy]")).ToHaveCountAsync(0);
        listed = await Gateway.Admin.GetFromJsonAsync<System.Text.Json.JsonElement>("/api/v1/tailnets/-/trust-policies");
        Assert.Empty(listed.GetProperty("trustPolicies").EnumerateArray());
    }

    [BrowserFact]
    public async Task Devices_appear_with_the_ephemeral_badge_and_disappear_without_a_reload()
    {
        var page = await SignedInPageAsync();
        await page.EvaluateAsync("() => { window.notReloaded = true; }");
        // The list is pushed: once the page's stream has its first list, devices coming and going are deltas only.
        await Poll.UntilAsync(async () => await ListUpdatesAsync("reset") >= 1, TimeSpan.FromSeconds(10), "the live list's first reset");
        var resets = await ListUpdatesAsync("reset");

        var persistent = (await Gateway.CreateKeyAsync(ephemeral: false)).Str("key");
        await Gateway.RegisterAsync(persistent, hostname: "build-cache");
        var key = (await Gateway.CreateKeyAsync(ephemeral: true, tags: ["tag:ci"])).Str("key");
        var (node, token) = await Gateway.RegisterAsync(key, hostname: "ci-runner-1");
        await using var map = await Gateway.OpenMapAsync(token);
        await map.WaitForAsync(m => m.Type() == "full", TimeSpan.FromSeconds(10), "full map");

        var row = page.Locator("tr[data-name='ci-runner-1']");
        await Expect(row.Locator(".badge.ephemeral")).ToHaveTextAsync("Ephemeral");
        await Expect(row.Locator(".status")).ToHaveTextAsync("Online");
        await Expect(row).ToContainTextAsync(node.Str("ipv4"));
        await Expect(row).ToContainTextAsync("tag:ci");
        await Expect(page.Locator("tr[data-name='build-cache'] .badge.ephemeral")).ToHaveCountAsync(0);
        await Expect(page.Locator("[data-count='total']")).ToHaveTextAsync("2");
        await Expect(page.Locator("[data-count='online']")).ToHaveTextAsync("1");
        Assert.Equal(resets, await ListUpdatesAsync("reset")); // no snapshot for the changes
        Assert.True(await ListUpdatesAsync("delta") >= 1);
        await ScreenshotAsync(page, "devices");

        // Filters: persistent only hides the ephemeral runner; tag:ci shows only it.
        await page.SelectOptionAsync("select[name=ephemeral]", "no");
        await page.WaitForURLAsync(url => url.Contains("ephemeral=no"));
        await Expect(row).ToHaveCountAsync(0);
        await Expect(page.Locator("tr[data-name='build-cache']")).ToHaveCountAsync(1);
        await page.SelectOptionAsync("select[name=ephemeral]", "");
        await page.WaitForURLAsync(url => url.Contains("ephemeral=&"));
        await page.WaitForLoadStateAsync(LoadState.Load);
        await page.SelectOptionAsync("select[name=tag]", "tag:ci");
        await page.WaitForURLAsync(url => url.Contains("tag=tag%3Aci"));
        await page.WaitForLoadStateAsync(LoadState.Load);
        await Expect(row).ToHaveCountAsync(1);
        await Expect(page.Locator("tr[data-name='build-cache']")).ToHaveCountAsync(0);
        await page.EvaluateAsync("() => { window.notReloaded = true; }"); // the filter navigated; watch from here

        Assert.Equal(HttpStatusCode.NoContent, await Gateway.LogoutAsync(token));
        await Expect(row).ToHaveCountAsync(0);
        Assert.True(await page.EvaluateAsync<bool>("() => window.notReloaded === true"), "the page was reloaded");
    }

    /// <summary>How many updates of a kind the gateway pushed to live device lists (its metric).</summary>
    private async Task<double> ListUpdatesAsync(string kind)
    {
        var metrics = await Gateway.Http.GetStringAsync("/metrics");
        var line = metrics.Split('\n').FirstOrDefault(l => l.StartsWith("eo_gateway_console_device_list_updates_total{", StringComparison.Ordinal) && l.Contains($"kind=\"{kind}\""));
        return line is null ? 0 : double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }

    [BrowserFact]
    public async Task Events_show_who_did_what_live_and_a_webhook_is_added_with_its_secret_shown_once()
    {
        var page = await SignedInPageAsync();
        await page.ClickAsync("nav >> text=Events");
        await Expect(page.Locator("h1")).ToHaveTextAsync("Events");
        await page.WaitForLoadStateAsync(LoadState.Load);
        await page.EvaluateAsync("() => { window.notReloaded = true; }");

        var key = (await Gateway.CreateKeyAsync(ephemeral: true)).Str("key");
        var (node, token) = await Gateway.RegisterAsync(key, hostname: "audit-me");
        Assert.Equal(HttpStatusCode.NoContent, await Gateway.LogoutAsync(token));
        var removed = page.Locator("tr[data-type='node.removed']");
        await Expect(removed).ToContainTextAsync("reason=logout");
        await Expect(removed).ToContainTextAsync($"node:{node.Str("id")}");
        await Expect(page.Locator("tr[data-type='key.created']")).ToContainTextAsync("admin-api");
        Assert.True(await page.EvaluateAsync<bool>("() => window.notReloaded === true"), "the page was reloaded");

        await page.SelectOptionAsync("select[name=type]", "key.*");
        await page.WaitForURLAsync(url => url.Contains("type=key."));
        await page.WaitForLoadStateAsync(LoadState.Load);
        await Expect(page.Locator("tr[data-event]")).ToHaveCountAsync(1);

        // A metadata address is refused beside the form; a good endpoint shows its secret once.
        await page.FillAsync("#Input_Url", "http://169.254.169.254/latest/meta-data/");
        await page.ClickAsync("text=Add webhook");
        await Expect(page.Locator("#create-error")).ToContainTextAsync("link-local");
        await page.FillAsync("#Input_Url", "https://hooks.example.com/eo");
        await page.FillAsync("#Input_Types", "node.removed");
        await page.ClickAsync("text=Add webhook");
        var secretBox = page.Locator("#new-secret");
        await Expect(secretBox).ToHaveValueAsync(new System.Text.RegularExpressions.Regex("^whsec_"));
        var secret = await secretBox.InputValueAsync();
        await ScreenshotAsync(page, "events");
        await page.ReloadAsync();
        await Expect(page.Locator("h1")).ToHaveTextAsync("Events");
        Assert.DoesNotContain(secret, await page.ContentAsync());
        var hook = page.Locator("tr[data-webhook]");
        await Expect(hook).ToContainTextAsync("https://hooks.example.com/eo");
        await Expect(hook).ToContainTextAsync("node.removed");
        var listed = await Gateway.Admin.GetFromJsonAsync<System.Text.Json.JsonElement>("/api/v1/tailnets/-/webhooks");
        Assert.Equal(["node.removed"], Assert.Single(listed.GetProperty("webhooks").EnumerateArray()).GetProperty("types").EnumerateArray().Select(t => t.GetString()));

        page.Dialog += async (_, dialog) => await dialog.AcceptAsync();
        await hook.Locator("text=Delete").ClickAsync();
        await Expect(page.Locator("tr[data-webhook]")).ToHaveCountAsync(0);
    }

    [BrowserFact]
    public async Task A_device_waiting_for_approval_is_approved_from_the_console()
    {
        var page = await SignedInPageAsync();
        await page.ClickAsync("text=Turn on");
        await Expect(page.Locator(".flash.notice")).ToContainTextAsync("Device approval is on");

        var key = (await Gateway.CreateKeyAsync(ephemeral: false, preauthorized: false)).Str("key");
        var (node, _) = await Gateway.RegisterAsync(key, hostname: "needs-ok");
        Assert.False(node.GetProperty("authorized").GetBoolean());

        var row = page.Locator("tr[data-name='needs-ok']");
        await Expect(row.Locator(".badge.approval")).ToHaveTextAsync("Needs approval");
        await ScreenshotAsync(page, "devices-approval");
        await row.Locator("text=Approve").ClickAsync();
        await Expect(page.Locator(".flash.notice")).ToContainTextAsync("Approved needs-ok");
        await Expect(row.Locator(".badge.approval")).ToHaveCountAsync(0);
        Assert.True((await Gateway.GetNodeAsync(node.Str("id")))!.Value.GetProperty("authorized").GetBoolean());

        // Removal asks first, then takes effect.
        page.Dialog += async (_, dialog) => await dialog.AcceptAsync();
        await row.Locator("text=Remove").ClickAsync();
        await Expect(row).ToHaveCountAsync(0);
        Assert.Null(await Gateway.GetNodeAsync(node.Str("id")));
    }

    [BrowserFact]
    public async Task A_change_without_the_antiforgery_token_is_refused_and_changes_nothing()
    {
        var page = await SignedInPageAsync();
        var key = (await Gateway.CreateKeyAsync(ephemeral: false)).Str("key");
        var (node, _) = await Gateway.RegisterAsync(key, hostname: "keep-me");
        var id = node.Str("id");
        await Expect(page.Locator("tr[data-name='keep-me']")).ToHaveCountAsync(1);
        var remove = Url($"/admin/devices?handler=Remove&tailnet=default&id={id}");

        // The session cookie alone, as a forged cross-site form would send it.
        var forged = await page.Context.APIRequest.PostAsync(remove, new() { Form = page.Context.APIRequest.CreateFormData(), MaxRedirects = 0 });
        Assert.Equal(400, forged.Status);
        Assert.NotNull(await Gateway.GetNodeAsync(id));

        // The same request with the page's token goes through: the token was what it lacked.
        var token = await page.Locator("input[name=__RequestVerificationToken]").First.InputValueAsync();
        var form = page.Context.APIRequest.CreateFormData();
        form.Set("__RequestVerificationToken", token);
        var genuine = await page.Context.APIRequest.PostAsync(remove, new() { Form = form, MaxRedirects = 0 });
        Assert.Equal(302, genuine.Status);
        Assert.Null(await Gateway.GetNodeAsync(id));
    }

    [BrowserFact]
    public async Task A_policy_error_is_shown_beside_the_text_and_the_old_policy_stays()
    {
        var page = await SignedInPageAsync();
        await page.ClickAsync("nav >> text=Policy");
        await Expect(page.Locator("#policy-text")).ToContainTextAsync("accept");
        var before = (await Gateway.GetPolicyAsync()).Body.GetRawText();

        const string invalid = """{"acls":[{"action":"accept","src":["*"],"dst":["tag:db"]}]}""";
        await page.FillAsync("#policy-text", invalid);
        await page.ClickAsync("text=Save policy");
        await Expect(page.Locator("#policy-error")).ToContainTextAsync("acls[0].dst[0]");
        await Expect(page.Locator("#policy-text")).ToHaveValueAsync(invalid);
        await ScreenshotAsync(page, "policy-error");
        Assert.Equal(before, (await Gateway.GetPolicyAsync()).Body.GetRawText());

        const string valid = """{"tagOwners":{"tag:ci":[]},"acls":[{"action":"accept","src":["tag:ci"],"dst":["tag:ci:*"]}]}""";
        await page.FillAsync("#policy-text", valid);
        await page.ClickAsync("text=Save policy");
        await Expect(page.Locator(".flash.notice")).ToHaveTextAsync("Policy saved.");
        await Expect(page.Locator("#policy-text")).ToContainTextAsync("tag:ci:*");
        var stored = (await Gateway.GetPolicyAsync()).Body;
        Assert.True(stored.GetProperty("tagOwners").TryGetProperty("tag:ci", out _));
        await ScreenshotAsync(page, "policy");
    }

    [BrowserFact]
    public async Task Pages_fit_a_360_pixel_screen_and_the_tailnet_switcher_appears_with_a_second_tailnet()
    {
        var key = (await Gateway.CreateKeyAsync(ephemeral: true, tags: ["tag:ci"])).Str("key");
        await Gateway.RegisterAsync(key, hostname: "narrow-screen-runner");
        await Gateway.CreateKeyAsync(tailnet: "staging");

        var page = await SignedInPageAsync(width: 360);
        foreach (var (nav, name) in new[] { ("Devices", "devices-360"), ("Auth keys", "keys-360"), ("Policy", "policy-360"), ("Events", "events-360") })
        {
            await page.ClickAsync($"nav >> text={nav}");
            await Expect(page.Locator("h1")).ToHaveTextAsync(nav);
            await page.WaitForLoadStateAsync(LoadState.Load);
            var width = await page.EvaluateAsync<int>("() => document.documentElement.scrollWidth");
            Assert.True(width <= 360, $"{nav} is {width} px wide at a 360 px viewport");
            await ScreenshotAsync(page, name);
        }

        await page.SelectOptionAsync("#tailnet-switch", "staging");
        await page.ClickAsync(".switcher button");
        await Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("tailnet=staging"));
        await Expect(page.Locator("#tailnet-switch")).ToHaveValueAsync("staging");

        await page.ClickAsync("nav >> text=Devices");
        var dashboardLink = page.Locator("nav a[href='/dashboard/']");
        await Expect(dashboardLink).ToHaveTextAsync("Orleans dashboard");
        Assert.Equal(200, (await page.GotoAsync(Url("/dashboard/")))!.Status);
    }
}
