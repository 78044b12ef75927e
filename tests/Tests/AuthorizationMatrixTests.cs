using System.Net;
using System.Net.Http.Headers;
using EphemeralOrleans.Protocol.V1;
using EphemeralOrleans.Tests.Infrastructure;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.Routing;
using Xunit.Abstractions;

namespace EphemeralOrleans.Tests;

/// <summary>
/// The authorization matrix, built from what the gateway serves rather than from a list kept by hand: every route of
/// its endpoint table and every method of its gRPC service descriptors, with no credential, a wrong key, a node token
/// and the admin key, on the HTTP port and on the gRPC port. Each route belongs to an access class below; a route or
/// method added later without one fails this test until someone decides who may call it.
/// </summary>
public sealed class AuthorizationMatrixTests(ITestOutputHelper log) : GatewayTest
{
    // Hundreds of wrong keys from this one address: not a guessing attack to throttle here (AdminGuardTests is).
    protected override IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?> { ["Admin:FailuresBeforeThrottle"] = "100000" };

    private enum Access
    {
        /// <summary>Anyone (health, metrics, discovery, the console's sign-in and assets).</summary>
        Public,

        /// <summary>The credential is in the body (registration): refused whatever the header says when the body has none.</summary>
        Registration,

        /// <summary>A node token.</summary>
        Node,

        /// <summary>The admin API key.</summary>
        Admin,

        /// <summary>A console session (cookie); a header credential, even the admin key, does not open it.</summary>
        Console,
    }

    private enum Credential
    {
        None,
        WrongKey,
        NodeToken,
        AdminKey,
    }

    /// <summary>Who may call each route, by method and route pattern; the first match wins.</summary>
    private static readonly (string Method, string Pattern, Access Access)[] HttpRoutes =
    [
        ("GET", "/healthz", Access.Public),
        ("GET", "/readyz", Access.Public),
        ("*", "/metrics", Access.Public),
        ("GET", "/api/v1/machine/endpoints", Access.Public),
        ("GET", "/openapi/{documentName}.json", Access.Public),
        ("GET", "/api/docs*", Access.Public),
        ("POST", "/api/v1/machine/register", Access.Registration),
        ("GET", "/api/v1/machine/map", Access.Node),
        ("PUT", "/api/v1/machine/self/endpoints", Access.Node),
        ("GET", "/api/v1/machine/relay", Access.Node),
        ("POST", "/api/v1/machine/logout", Access.Node),
        ("*", "/api/v1/tailnets/{tailnet}/*", Access.Admin),
        ("GET", "/api/v1/admin/events", Access.Admin),
        // Open only to connections from this machine; every request here says it was forwarded for another one.
        ("*", "/dashboard*", Access.Admin),
        ("GET", "/admin", Access.Public), // a redirect to the devices page
        ("GET", "/admin/assets/{name}", Access.Public),
        ("*", "/admin/signin", Access.Public),
        ("*", "/admin/*", Access.Console),
    ];

    /// <summary>Who may call each gRPC method, by service.</summary>
    private static readonly Dictionary<string, Access> GrpcMethods = new()
    {
        [$"{ControlService.Descriptor.FullName}/Register"] = Access.Registration,
        [$"{ControlService.Descriptor.FullName}/Map"] = Access.Node,
        [$"{ControlService.Descriptor.FullName}/SetEndpoints"] = Access.Node,
        [$"{ControlService.Descriptor.FullName}/Logout"] = Access.Node,
        [$"{ControlService.Descriptor.FullName}/Endpoints"] = Access.Public,
    };

    [Fact]
    public async Task Every_route_on_every_port_refuses_each_credential_it_does_not_accept()
    {
        var routes = Gateway.Service<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            // gRPC methods (and gRPC's answers for unknown ones) are the gRPC matrix's, below.
            .Where(e => e.Metadata.GetMetadata<Grpc.AspNetCore.Server.GrpcMethodMetadata>() is null && e.RoutePattern.RawText?.Contains(":grpcunimplemented") != true)
            .SelectMany(e => (e.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? ["GET", "POST"]).Select(m => (Method: m, Pattern: "/" + e.RoutePattern.RawText!.TrimStart('/'))))
            .Distinct()
            .ToList();
        Assert.Contains(routes, r => r.Pattern == "/api/v1/tailnets/{tailnet}/keys");
        Assert.Contains(routes, r => r.Pattern.StartsWith("/admin/", StringComparison.Ordinal));
        var unclassified = routes.Where(r => ClassOf(r.Method, r.Pattern) is null).ToList();
        Assert.True(unclassified.Count == 0, "routes without an access class: " + string.Join(", ", unclassified));

        var key = (await Gateway.CreateKeyAsync()).Str("key");
        using var h2c = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false, UseCookies = false });
        using var http = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false, UseCookies = false });
        var failures = new List<string>();
        var checkedCount = 0;
        foreach (var (method, pattern) in routes)
        {
            var access = ClassOf(method, pattern)!.Value;
            foreach (var credential in Enum.GetValues<Credential>())
            {
                foreach (var grpcPort in new[] { false, true })
                {
                    // A fresh node per request: a logout must not spend the token another request needs.
                    var header = await HeaderAsync(credential, key);
                    var path = Fill(pattern);
                    using var request = new HttpRequestMessage(new HttpMethod(method), new Uri(grpcPort ? Gateway.GrpcUrl : Gateway.Http.BaseAddress!, path))
                    {
                        Content = method is "POST" or "PUT" or "PATCH" ? new StringContent("{}", System.Text.Encoding.UTF8, "application/json") : null,
                    };
                    if (grpcPort)
                    {
                        request.Version = HttpVersion.Version20;
                        request.VersionPolicy = HttpVersionPolicy.RequestVersionExact; // h2c, as a client of the gRPC port would
                    }

                    if (header is not null)
                    {
                        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", header);
                    }

                    request.Headers.Add("X-Forwarded-For", "198.18.0.9");
                    using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                    using var response = await (grpcPort ? h2c : http).SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
                    checkedCount++;
                    var status = (int)response.StatusCode;
                    var location = response.Headers.Location?.ToString() ?? "";
                    var expected = grpcPort ? "404" : Expected(access, credential);
                    var ok = grpcPort
                        ? status == 404
                        : access switch
                        {
                            Access.Console => status == 302 && location.Contains("/admin/signin", StringComparison.Ordinal),
                            Access.Registration => status is 400 or 401,
                            _ when Accepts(access, credential) => status is not (401 or 403) && status < 500,
                            _ => status == 401,
                        };
                    if (!ok)
                    {
                        failures.Add($"{method} {path} ({access}) with {credential} on the {(grpcPort ? "gRPC" : "HTTP")} port: {status} {location}, expected {expected}");
                    }
                }
            }
        }

        log.WriteLine($"{routes.Count} routes, {checkedCount} requests: " + string.Join(", ", routes.Select(r => $"{r.Method} {r.Pattern}")));
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public async Task Every_gRPC_method_refuses_each_credential_it_does_not_accept()
    {
        var methods = new[] { ControlService.Descriptor, AdminService.Descriptor }
            .SelectMany(s => s.Methods.Select(m => (Name: $"{s.FullName}/{m.Name}", m.IsServerStreaming, Access: GrpcMethods.TryGetValue($"{s.FullName}/{m.Name}", out var a) ? a : s == AdminService.Descriptor ? Access.Admin : (Access?)null)))
            .ToList();
        var unclassified = methods.Where(m => m.Access is null).Select(m => m.Name).ToList();
        Assert.True(unclassified.Count == 0, "methods without an access class: " + string.Join(", ", unclassified));

        var key = (await Gateway.CreateKeyAsync()).Str("key");
        using var channel = GrpcChannel.ForAddress(Gateway.GrpcUrl);
        var invoker = channel.CreateCallInvoker();
        var bytes = Marshallers.Create(b => b, b => b);
        var failures = new List<string>();
        foreach (var (name, streaming, access) in methods)
        {
            var slash = name.IndexOf('/');
            var method = new Method<byte[], byte[]>(streaming ? MethodType.ServerStreaming : MethodType.Unary, name[..slash], name[(slash + 1)..], bytes, bytes);
            foreach (var credential in Enum.GetValues<Credential>())
            {
                var header = await HeaderAsync(credential, key);
                var options = new CallOptions(header is null ? new Metadata() : GrpcClient.Bearer(header), DateTime.UtcNow.AddSeconds(5));
                var status = await CallAsync(invoker, method, options);
                var ok = access switch
                {
                    Access.Registration => status is StatusCode.InvalidArgument or StatusCode.Unauthenticated,
                    _ when Accepts(access!.Value, credential) => status is not (StatusCode.Unauthenticated or StatusCode.PermissionDenied or StatusCode.Internal or StatusCode.Unknown),
                    _ => status == StatusCode.Unauthenticated,
                };
                if (!ok)
                {
                    failures.Add($"{name} ({access}) with {credential}: {status}, expected {Expected(access!.Value, credential)}");
                }
            }
        }

        log.WriteLine($"{methods.Count} methods, {methods.Count * 4} calls");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    private static async Task<StatusCode> CallAsync(CallInvoker invoker, Method<byte[], byte[]> method, CallOptions options)
    {
        try
        {
            if (method.Type == MethodType.ServerStreaming)
            {
                using var call = invoker.AsyncServerStreamingCall(method, null, options, []);
                await call.ResponseStream.MoveNext(CancellationToken.None); // the first message: the stream was accepted
                return StatusCode.OK;
            }

            await invoker.AsyncUnaryCall(method, null, options, []);
            return StatusCode.OK;
        }
        catch (RpcException exception)
        {
            return exception.StatusCode;
        }
    }

    private static Access? ClassOf(string method, string pattern) =>
        HttpRoutes.FirstOrDefault(r => (r.Method == "*" || r.Method == method) && Matches(r.Pattern, pattern)) is { Pattern: not null } route ? route.Access : null;

    private static bool Matches(string rule, string pattern) =>
        rule.EndsWith('*') ? pattern.StartsWith(rule[..^1], StringComparison.Ordinal) : rule == pattern;

    private static bool Accepts(Access access, Credential credential) => access switch
    {
        Access.Public => true,
        Access.Node => credential == Credential.NodeToken,
        Access.Admin => credential == Credential.AdminKey,
        _ => false,
    };

    private static string Expected(Access access, Credential credential) => access switch
    {
        Access.Console => "302 to /admin/signin",
        Access.Registration => "400 or 401",
        _ => Accepts(access, credential) ? "accepted" : "401",
    };

    private async Task<string?> HeaderAsync(Credential credential, string key) => credential switch
    {
        Credential.WrongKey => "eo-admin-not-the-key",
        Credential.NodeToken => (await Gateway.RegisterAsync(key, hostname: "matrix")).Token,
        Credential.AdminKey => TestGateway.AdminKey,
        _ => null,
    };

    /// <summary>A path for a route pattern: each parameter gets a value its route accepts (a wrong one would be a 404
    /// before any credential is looked at).</summary>
    private string Fill(string pattern) => System.Text.RegularExpressions.Regex.Replace(pattern, @"\{\**([^}:=?]+)([^}]*)\}", m => (m.Groups[1].Value, m.Groups[2].Value) switch
    {
        ("tailnet", _) => "default",
        ("name", _) => "console.css",
        (_, ":int") => "1",
        ("address" or "path", _) => Gateway.Service<Orleans.Runtime.ILocalSiloDetails>().SiloAddress.ToParsableString(), // the dashboard's silo pages
        _ => "x",
    });
}
