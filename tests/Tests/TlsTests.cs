using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using EphemeralOrleans.Protocol.V1;
using EphemeralOrleans.Testing;
using EphemeralOrleans.Tests.Infrastructure;
using Grpc.Core;
using Grpc.Net.Client;
using Xunit.Abstractions;

namespace EphemeralOrleans.Tests;

/// <summary>
/// The gateway serving HTTPS and gRPC over TLS from configuration (a PEM certificate a private CA signed), as a
/// process: agents and the admin CLI reach it trusting that CA through <c>--ca-file</c>; without it, or in
/// cleartext against the TLS port, they fail at once with one line and an exit code, and nothing is registered.
/// </summary>
public sealed class TlsTests(ITestOutputHelper log) : IAsyncLifetime
{
    private static readonly TimeSpan Within = TimeSpan.FromSeconds(40);
    private readonly string _directory = Directory.CreateTempSubdirectory("eo-tls-test-").FullName;
    private HostProcess _gateway = null!;
    private Uri _grpcUrl = null!;

    public async Task InitializeAsync()
    {
        var (certificate, key) = TestCertificates.Server;
        _grpcUrl = new Uri($"https://127.0.0.1:{FreePort.Next()}");
        _gateway = await HostProcess.StartGatewayAsync(new Dictionary<string, string>
        {
            ["Kestrel:Endpoints:Http:Url"] = $"https://127.0.0.1:{FreePort.Next()}",
            ["Kestrel:Endpoints:Grpc:Url"] = _grpcUrl.ToString().TrimEnd('/'),
            ["Kestrel:Certificates:Default:Path"] = certificate,
            ["Kestrel:Certificates:Default:KeyPath"] = key,
            ["Admin:ApiKey"] = ApiClient.AdminKey,
        });
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    private string LoginServer => _gateway.HttpUrl.ToString();

    /// <summary>A client that trusts the test CA only, as <c>--ca-file</c> makes the agent.</summary>
    private static SocketsHttpHandler TrustingTheCa()
    {
        var chain = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
        chain.CustomTrustStore.ImportFromPemFile(TestCertificates.CaFile);
        return new SocketsHttpHandler { SslOptions = { CertificateChainPolicy = chain } };
    }

    private HttpClient Admin()
    {
        var admin = new HttpClient(TrustingTheCa()) { BaseAddress = _gateway.HttpUrl, Timeout = TimeSpan.FromSeconds(30) };
        admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", ApiClient.AdminKey);
        return admin;
    }

    [Fact]
    public async Task The_API_and_the_console_answer_over_TLS_with_HSTS_to_a_client_that_trusts_the_CA_only()
    {
        using var trusting = new HttpClient(TrustingTheCa()) { BaseAddress = _gateway.HttpUrl };
        Assert.Equal(HttpStatusCode.OK, (await trusting.GetAsync("/readyz")).StatusCode);
        using var signIn = await trusting.GetAsync("/admin/signin");
        Assert.Equal(HttpStatusCode.OK, signIn.StatusCode);
        Assert.Contains("max-age=31536000", signIn.Headers.GetValues("Strict-Transport-Security").Single());

        // The system's roots do not know the test CA: the handshake fails, nothing is sent.
        using var untrusting = new HttpClient { BaseAddress = _gateway.HttpUrl };
        var refused = await Assert.ThrowsAsync<HttpRequestException>(() => untrusting.GetAsync("/readyz"));
        Assert.IsType<AuthenticationException>(refused.InnerException);

        // gRPC over TLS: the health service answers a channel that trusts the CA.
        using var channel = GrpcChannel.ForAddress(_grpcUrl, new GrpcChannelOptions { HttpHandler = TrustingTheCa() });
        var health = new Grpc.Health.V1.Health.HealthClient(channel);
        var status = await health.CheckAsync(new Grpc.Health.V1.HealthCheckRequest(), deadline: DateTime.UtcNow.AddSeconds(20));
        Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving, status.Status);
    }

    [Theory]
    [InlineData("grpc")]
    [InlineData("http")]
    public async Task An_agent_joins_over_TLS_trusting_the_CA_file_and_the_admin_CLI_sees_it(string transport)
    {
        using var admin = Admin();
        var key = await admin.PostAsJsonAsync("/api/v1/tailnets/-/keys", new { reusable = false, ephemeral = true, preauthorized = true, description = "tls" });
        key.EnsureSuccessStatusCode();
        var authKey = (await key.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("key").GetString()!;

        await using var agent = AgentProcess.Start(["up", "--tun", "none", "--transport", transport, "--login-server", LoginServer, "--ca-file", TestCertificates.CaFile,
            "--hostname", "tls-" + transport, "--json", "--socket", Path.Combine(_directory, transport + ".sock")], new Dictionary<string, string> { ["EO_AUTH_KEY"] = authKey });
        await agent.WaitForEventAsync("netmap", Within);

        var (exitCode, output) = await AgentProcess.RunAsync(["nodes", "list", "--json", "--login-server", LoginServer, "--ca-file", TestCertificates.CaFile],
            Within, new Dictionary<string, string> { ["EO_ADMIN_KEY"] = ApiClient.AdminKey });
        Assert.True(exitCode == 0, output);
        Assert.Contains("\"tls-" + transport + "\"", output);

        // Leaving (an ephemeral node, logged out on exit) goes over TLS too.
        await agent.TerminateAsync();
        Assert.Equal(0, await agent.WaitForExitAsync(Within));
        var nodes = await admin.GetFromJsonAsync<JsonElement>("/api/v1/tailnets/-/nodes");
        Assert.DoesNotContain(nodes.GetProperty("nodes").EnumerateArray(), n => n.GetProperty("name").GetString() == "tls-" + transport);
    }

    [Fact]
    public async Task Without_the_CA_or_in_cleartext_against_the_TLS_port_agents_fail_at_once_with_one_line_and_register_nothing()
    {
        using var admin = Admin();
        var key = await admin.PostAsJsonAsync("/api/v1/tailnets/-/keys", new { reusable = true, ephemeral = true, preauthorized = true, description = "tls" });
        var authKey = (await key.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("key").GetString()!;
        var cleartext = new UriBuilder(_gateway.HttpUrl) { Scheme = "http" }.Uri.ToString();
        string Sock(string name) => Path.Combine(_directory, name + ".sock");
        var environment = new Dictionary<string, string> { ["EO_AUTH_KEY"] = authKey, ["EO_ADMIN_KEY"] = ApiClient.AdminKey };
        var cases = new (string Name, string[] Args, int ExitCode, string Says, TimeSpan Within)[]
        {
            // Not retried for the connect timeout: a certificate nobody trusts stays untrusted.
            ("no --ca-file", ["up", "--tun", "none", "--login-server", LoginServer, "--connect-timeout", "60s", "--socket", Sock("a")], 14, "--ca-file", TimeSpan.FromSeconds(20)),
            ("no --ca-file, admin", ["nodes", "list", "--login-server", LoginServer], 14, "TLS failed", TimeSpan.FromSeconds(20)),
            ("cleartext to the TLS port", ["up", "--tun", "none", "--login-server", cleartext, "--connect-timeout", "2s", "--socket", Sock("b")], 14, "use https://", TimeSpan.FromSeconds(20)),
            ("a CA file that does not exist", ["up", "--tun", "none", "--login-server", LoginServer, "--ca-file", Path.Combine(_directory, "none.pem"), "--socket", Sock("c")], 2, "--ca-file", TimeSpan.FromSeconds(20)),
            ("a CA file without a certificate", ["up", "--tun", "none", "--login-server", LoginServer, "--ca-file", TestCertificates.Server.Key, "--socket", Sock("d")], 2, "no PEM certificate", TimeSpan.FromSeconds(20)),
        };
        foreach (var c in cases)
        {
            var clock = Stopwatch.StartNew();
            var (exitCode, output) = await AgentProcess.RunAsync(c.Args, Within, environment);
            log.WriteLine($"{c.Name}: exit {exitCode} after {clock.Elapsed.TotalSeconds:0.0} s: {output.Trim()}");
            Assert.True(exitCode == c.ExitCode, $"{c.Name}: expected exit {c.ExitCode}, got {exitCode}:\n{output}");
            Assert.True(clock.Elapsed < c.Within, $"{c.Name}: took {clock.Elapsed}");
            Assert.Contains(c.Says, output);
            Assert.Single(output.Trim().Split('\n'));
            Assert.DoesNotContain("Exception", output);
            Assert.DoesNotContain(authKey, output);
        }

        // A cleartext HTTP/2 (gRPC) client against the TLS gRPC port: a clean transport failure, not a hang.
        using var channel = GrpcChannel.ForAddress(new UriBuilder(_grpcUrl) { Scheme = "http" }.Uri);
        var failure = await Assert.ThrowsAsync<RpcException>(() => new ControlService.ControlServiceClient(channel)
            .RegisterAsync(new RegisterRequest { AuthKey = authKey, NodeKey = ApiClient.NewNodeKey(), Hostname = "cleartext" }, deadline: DateTime.UtcNow.AddSeconds(20)).ResponseAsync);
        Assert.Equal(StatusCode.Unavailable, failure.StatusCode);

        var nodes = await admin.GetFromJsonAsync<JsonElement>("/api/v1/tailnets/-/nodes");
        Assert.Empty(nodes.GetProperty("nodes").EnumerateArray());
    }

    [Fact]
    public async Task The_relay_answers_over_wss_to_a_node_that_trusts_the_CA()
    {
        using var admin = Admin();
        var key = await admin.PostAsJsonAsync("/api/v1/tailnets/-/keys", new { reusable = false, ephemeral = true, preauthorized = true });
        var authKey = (await key.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("key").GetString()!;
        using var register = await admin.PostAsJsonAsync("/api/v1/machine/register", new { authKey, nodeKey = ApiClient.NewNodeKey(), hostname = "relayed", ephemeral = true });
        var token = (await register.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("nodeToken").GetString()!;

        // As the agent's relay link connects: a WebSocket over the same trust (wss:// from an https:// login server).
        using var invoker = new HttpMessageInvoker(TrustingTheCa());
        using var socket = new System.Net.WebSockets.ClientWebSocket();
        socket.Options.SetRequestHeader("Authorization", "Bearer " + token);
        await socket.ConnectAsync(new UriBuilder(_gateway.HttpUrl) { Scheme = "wss", Path = "/api/v1/machine/relay" }.Uri, invoker, CancellationToken.None);
        Assert.Equal(System.Net.WebSockets.WebSocketState.Open, socket.State);
        await socket.CloseAsync(System.Net.WebSockets.WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);
    }

    [Fact]
    public async Task A_gateway_given_an_https_endpoint_without_a_certificate_refuses_to_start_with_one_line()
    {
        var (exitCode, _, stderr) = await HostProcess.RunToExitAsync("Gateway",
            [$"--Kestrel:Endpoints:Http:Url=https://127.0.0.1:{FreePort.Next()}", $"--Kestrel:Endpoints:Grpc:Url=http://127.0.0.1:{FreePort.Next()}"], TimeSpan.FromSeconds(60));
        Assert.Equal(2, exitCode);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("error: Kestrel:Endpoints:Http:Url is https:// but no certificate is configured", line);
    }
}
