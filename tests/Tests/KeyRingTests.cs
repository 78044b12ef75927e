using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using EphemeralOrleans.Testing;
using EphemeralOrleans.Tests.Infrastructure;
using Npgsql;
using Xunit.Abstractions;

namespace EphemeralOrleans.Tests;

/// <summary>
/// The gateways' key ring at rest in PostgreSQL: the console's data-protection keys and the control key are stored
/// encrypted to the key ring certificate (read back from the database's rows here); a gateway on PostgreSQL without
/// one refuses to start; a ring stored in the clear before is encrypted once the certificate is configured.
/// </summary>
public sealed class KeyRingTests(ITestOutputHelper log) : PostgresTest
{
    [PostgresFact]
    public async Task The_stored_key_ring_holds_no_plaintext_key_and_a_restart_with_the_certificate_reads_it()
    {
        var settings = new Dictionary<string, string?>
        {
            ["Storage:Provider"] = "Postgres",
            ["ConnectionStrings:Postgres"] = await NewDatabaseAsync("keyring"),
            ["KeyRing:CertificatePath"] = TestCertificates.KeyRing.Certificate,
            ["KeyRing:KeyPath"] = TestCertificates.KeyRing.Key,
        };
        string cookie, controlKey;
        await using (var gateway = await TestGateway.StartAsync(settings))
        {
            cookie = await SignInAsync(gateway);
            controlKey = await gateway.ControlKeyAsync();
        }

        var stored = await StoredRingAsync(settings["ConnectionStrings:Postgres"]!);
        log.WriteLine(stored);
        Assert.Contains("<encryptedSecret", stored); // a data-protection key, encrypted
        Assert.Contains("rsa-oaep-sha256:", stored); // the control key, encrypted
        Assert.DoesNotContain("<masterKey", stored);
        Assert.DoesNotContain("<value>", stored);

        // Restarted with the same certificate: the console's cookie still opens it, agents see the same control key.
        await using (var restarted = await TestGateway.StartAsync(settings))
        {
            Assert.Equal(HttpStatusCode.OK, await OpenKeysPageAsync(restarted, cookie));
            Assert.Equal(controlKey, await restarted.ControlKeyAsync());
        }
    }

    [PostgresFact]
    public async Task A_ring_stored_in_the_clear_is_encrypted_once_the_certificate_is_configured()
    {
        var database = await NewDatabaseAsync("keyring");
        var clear = new Dictionary<string, string?>
        {
            ["Storage:Provider"] = "Postgres",
            ["ConnectionStrings:Postgres"] = database,
            ["KeyRing:AllowUnencrypted"] = "true",
        };
        string controlKey;
        await using (var gateway = await TestGateway.StartAsync(clear))
        {
            await SignInAsync(gateway);
            controlKey = await gateway.ControlKeyAsync();
        }

        // What the test looks for is there when the ring is not encrypted.
        Assert.Contains("<masterKey", await StoredRingAsync(database));

        var encrypted = new Dictionary<string, string?>(clear)
        {
            ["KeyRing:AllowUnencrypted"] = "false",
            ["KeyRing:CertificatePath"] = TestCertificates.KeyRing.Certificate,
            ["KeyRing:KeyPath"] = TestCertificates.KeyRing.Key,
        };
        await using (var gateway = await TestGateway.StartAsync(encrypted))
        {
            await SignInAsync(gateway);
            Assert.Equal(controlKey, await gateway.ControlKeyAsync()); // the same key, now stored encrypted
        }

        var stored = await StoredRingAsync(database);
        Assert.DoesNotContain("<masterKey", stored);
        Assert.Contains("<encryptedSecret", stored);
        Assert.Contains("rsa-oaep-sha256:", stored);
    }

    [Fact]
    public async Task A_gateway_on_PostgreSQL_without_a_key_ring_certificate_refuses_to_start_with_one_line()
    {
        // The check comes before any connection: no database is needed to see it.
        var (exitCode, _, stderr) = await HostProcess.RunToExitAsync("Gateway",
            ["--Storage:Provider=Postgres", "--ConnectionStrings:Postgres=Host=127.0.0.1;Port=1;Username=none", "--Gateway:Mode=Client"], TimeSpan.FromSeconds(60));
        Assert.Equal(2, exitCode);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("error: The key ring (console sessions, the control key) would be stored in PostgreSQL unencrypted: set KeyRing:CertificatePath", line);
    }

    /// <summary>Every stored grain state of the database, as text: the key ring's XML and control key are UTF-8 inside.</summary>
    private static async Task<string> StoredRingAsync(string connectionString)
    {
        await using var dataSource = NpgsqlDataSource.Create(connectionString);
        await using var command = dataSource.CreateCommand("SELECT payloadbinary FROM orleansstorage WHERE graintypestring LIKE '%keyring%'");
        await using var reader = await command.ExecuteReaderAsync();
        var text = new StringBuilder();
        while (await reader.ReadAsync())
        {
            text.AppendLine(Encoding.UTF8.GetString((byte[])reader[0]));
        }

        Assert.True(text.Length > 0, "no key ring state stored");
        return text.ToString();
    }

    /// <summary>Signs in to the console over HTTP; the session cookie.</summary>
    private static async Task<string> SignInAsync(TestGateway gateway)
    {
        using var http = new HttpClient(new SocketsHttpHandler { UseCookies = false, AllowAutoRedirect = false }) { BaseAddress = gateway.Http.BaseAddress };
        using var form = await http.GetAsync("/admin/signin");
        var antiforgery = form.Headers.GetValues("Set-Cookie").Single(c => c.StartsWith("eo-console-af=", StringComparison.Ordinal)).Split(';')[0];
        var token = Regex.Match(await form.Content.ReadAsStringAsync(), "name=\"__RequestVerificationToken\" type=\"hidden\" value=\"([^\"]+)\"").Groups[1].Value;
        using var signIn = new HttpRequestMessage(HttpMethod.Post, "/admin/signin")
        {
            Content = new FormUrlEncodedContent(new Dictionary<string, string> { ["ApiKey"] = TestGateway.AdminKey, ["__RequestVerificationToken"] = token }),
        };
        signIn.Headers.Add("Cookie", antiforgery);
        using var signedIn = await http.SendAsync(signIn);
        Assert.Equal(HttpStatusCode.Redirect, signedIn.StatusCode);
        return signedIn.Headers.GetValues("Set-Cookie").Single(c => c.StartsWith("eo-console=", StringComparison.Ordinal)).Split(';')[0];
    }

    private static async Task<HttpStatusCode> OpenKeysPageAsync(TestGateway gateway, string cookie)
    {
        using var http = new HttpClient(new SocketsHttpHandler { UseCookies = false, AllowAutoRedirect = false }) { BaseAddress = gateway.Http.BaseAddress };
        using var request = new HttpRequestMessage(HttpMethod.Get, "/admin/keys");
        request.Headers.Add("Cookie", cookie);
        using var response = await http.SendAsync(request);
        return response.StatusCode;
    }
}
