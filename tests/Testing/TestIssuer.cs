using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace EphemeralOrleans.Testing;

/// <summary>
/// A real OIDC issuer for tests, on loopback: Kestrel serving <c>/.well-known/openid-configuration</c> and the JWKS,
/// signing with an RSA and an EC key of its own. It mints tokens with any claims (and the broken kinds: <c>alg: none</c>,
/// HS256 keyed with its public key), rotates its keys, goes down and comes back on the same port, and counts the
/// requests it served.
/// </summary>
public sealed class TestIssuer : IAsyncDisposable
{
    private readonly int _port;
    private readonly List<(string Kid, AsymmetricAlgorithm Key)> _published = [];
    private WebApplication? _app;
    private int _requests;

    private TestIssuer(int port)
    {
        _port = port;
        Rotate();
        _published.Add(("ec-" + Guid.NewGuid().ToString("N")[..8], ECDsa.Create(ECCurve.NamedCurves.nistP256)));
    }

    /// <summary>The issuer as tokens carry it (<c>http://127.0.0.1:port</c>).</summary>
    public string Issuer => $"http://127.0.0.1:{_port}";

    /// <summary>The bearer a job's token request must carry (<c>ACTIONS_ID_TOKEN_REQUEST_TOKEN</c>).</summary>
    public string ActionsRequestToken { get; } = Guid.NewGuid().ToString("N");

    /// <summary><c>ACTIONS_ID_TOKEN_REQUEST_URL</c> for jobs of this issuer.</summary>
    public string ActionsRequestUrl => Issuer + "/actions-token?api-version=2.0";

    /// <summary>The subject of the tokens the Actions endpoint mints.</summary>
    public string ActionsSubject { get; set; } = "repo:acme/api:ref:refs/heads/main";

    /// <summary>Discovery and JWKS requests served so far.</summary>
    public int Requests => Volatile.Read(ref _requests);

    /// <summary>The current RSA key's id.</summary>
    public string RsaKid => _published.Last(k => k.Key is RSA).Kid;

    public string EcKid => _published.First(k => k.Key is ECDsa).Kid;

    public static async Task<TestIssuer> StartAsync()
    {
        var issuer = new TestIssuer(FreePort.Next());
        await issuer.StartAgainAsync();
        return issuer;
    }

    /// <summary>Serves again on the same port (after <see cref="StopAsync"/>).</summary>
    public async Task StartAgainAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls(Issuer);
        builder.Logging.ClearProviders();
        var app = builder.Build();
        app.MapGet("/.well-known/openid-configuration", () =>
        {
            Interlocked.Increment(ref _requests);
            return Results.Text(new JsonObject
            {
                ["issuer"] = Issuer,
                ["jwks_uri"] = Issuer + "/jwks",
                ["response_types_supported"] = new JsonArray("id_token"),
                ["subject_types_supported"] = new JsonArray("public"),
                ["id_token_signing_alg_values_supported"] = new JsonArray("RS256", "ES256"),
            }.ToJsonString(), "application/json");
        });
        // GitHub Actions' token endpoint as a job sees it: ACTIONS_ID_TOKEN_REQUEST_URL with the bearer
        // ACTIONS_ID_TOKEN_REQUEST_TOKEN, the audience as a query parameter; {"value": token}.
        app.MapGet("/actions-token", (HttpContext context) =>
        {
            if (context.Request.Headers.Authorization.ToString() != "Bearer " + ActionsRequestToken)
            {
                return Results.Unauthorized();
            }

            var audience = context.Request.Query["audience"].ToString();
            return Results.Json(new { value = Mint(ActionsSubject, audience.Length > 0 ? audience : "https://github.com/acme") });
        });
        app.MapGet("/jwks", () =>
        {
            Interlocked.Increment(ref _requests);
            lock (_published)
            {
                return Results.Text(new JsonObject { ["keys"] = new JsonArray([.. _published.Select(k => Jwk(k.Kid, k.Key))]) }.ToJsonString(), "application/json");
            }
        });
        await app.StartAsync();
        _app = app;
    }

    /// <summary>Stops serving (connections are refused) until <see cref="StartAgainAsync"/>.</summary>
    public async Task StopAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
            _app = null;
        }
    }

    /// <summary>A new RSA key with a new kid, published beside the old ones; tokens are signed with it from now on.</summary>
    public void Rotate()
    {
        lock (_published)
        {
            _published.Add(("rsa-" + Guid.NewGuid().ToString("N")[..8], RSA.Create(2048)));
        }
    }

    /// <summary>A signed token. <paramref name="claims"/> replace or add to the standard ones (a null value removes
    /// one); <paramref name="alg"/> RS256 or ES256; <paramref name="kid"/> overrides the header's key id.</summary>
    public string Mint(string subject, string audience, TimeSpan? lifetime = null, DateTimeOffset? issuedAt = null, string alg = "RS256",
        string? kid = null, IReadOnlyDictionary<string, object?>? claims = null, AsymmetricAlgorithm? signWith = null)
    {
        var payload = Payload(subject, audience, lifetime, issuedAt, claims);
        SigningCredentials credentials;
        lock (_published)
        {
            credentials = alg switch
            {
                "RS256" => new SigningCredentials(new RsaSecurityKey((RSA)(signWith ?? _published.Last(k => k.Key is RSA).Key)) { KeyId = kid ?? RsaKid }, SecurityAlgorithms.RsaSha256),
                "ES256" => new SigningCredentials(new ECDsaSecurityKey((ECDsa)(signWith ?? _published.First(k => k.Key is ECDsa).Key)) { KeyId = kid ?? EcKid }, SecurityAlgorithms.EcdsaSha256),
                _ => throw new ArgumentException($"alg {alg}"),
            };
        }

        // No cached signature providers: they are keyed by key id, and copies of one key (CloneSigningKey) share it.
        credentials.CryptoProviderFactory = new CryptoProviderFactory { CacheSignatureProviders = false };
        return new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(payload, credentials);
    }

    /// <summary>A copy of the current RSA signing key, for minting on many threads at once (pass it as <c>signWith</c>
    /// with <see cref="RsaKid"/>): one key object is not for concurrent use.</summary>
    public RSA CloneSigningKey()
    {
        lock (_published)
        {
            var copy = RSA.Create();
            copy.ImportParameters(((RSA)_published.Last(k => k.Key is RSA).Key).ExportParameters(includePrivateParameters: true));
            return copy;
        }
    }

    /// <summary>An unsigned token (<c>alg: none</c>).</summary>
    public string MintUnsigned(string subject, string audience) =>
        Base64Url("""{"alg":"none","typ":"JWT"}""") + "." + Base64Url(Payload(subject, audience, null, null, null)) + ".";

    /// <summary>HS256 keyed with the issuer's public RSA key (the algorithm-confusion attack).</summary>
    public string MintHs256WithPublicKey(string subject, string audience)
    {
        byte[] secret;
        lock (_published)
        {
            secret = Encoding.UTF8.GetBytes(((RSA)_published.Last(k => k.Key is RSA).Key).ExportSubjectPublicKeyInfoPem());
        }

        var header = Base64Url($$"""{"alg":"HS256","typ":"JWT","kid":"{{RsaKid}}"}""");
        var body = Base64Url(Payload(subject, audience, null, null, null));
        var signature = HMACSHA256.HashData(secret, Encoding.ASCII.GetBytes(header + "." + body));
        return $"{header}.{body}.{Base64UrlEncoder.Encode(signature)}";
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        foreach (var (_, key) in _published)
        {
            key.Dispose();
        }
    }

    private string Payload(string subject, string audience, TimeSpan? lifetime, DateTimeOffset? issuedAt, IReadOnlyDictionary<string, object?>? claims)
    {
        var iat = issuedAt ?? DateTimeOffset.UtcNow;
        var payload = new JsonObject
        {
            ["iss"] = Issuer,
            ["aud"] = audience,
            ["sub"] = subject,
            ["iat"] = iat.ToUnixTimeSeconds(),
            ["nbf"] = iat.ToUnixTimeSeconds(),
            ["exp"] = (iat + (lifetime ?? TimeSpan.FromMinutes(5))).ToUnixTimeSeconds(),
            ["jti"] = Guid.NewGuid().ToString("N"),
        };
        foreach (var (name, value) in claims ?? new Dictionary<string, object?>())
        {
            payload[name] = value is null ? null : JsonSerializer.SerializeToNode(value);
            if (value is null)
            {
                payload.Remove(name);
            }
        }

        return payload.ToJsonString();
    }

    private static JsonObject Jwk(string kid, AsymmetricAlgorithm key) => key switch
    {
        RSA rsa when rsa.ExportParameters(false) is var p => new JsonObject
        {
            ["kty"] = "RSA", ["kid"] = kid, ["use"] = "sig", ["alg"] = "RS256",
            ["n"] = Base64UrlEncoder.Encode(p.Modulus), ["e"] = Base64UrlEncoder.Encode(p.Exponent),
        },
        ECDsa ec when ec.ExportParameters(false) is var p => new JsonObject
        {
            ["kty"] = "EC", ["kid"] = kid, ["use"] = "sig", ["alg"] = "ES256", ["crv"] = "P-256",
            ["x"] = Base64UrlEncoder.Encode(p.Q.X), ["y"] = Base64UrlEncoder.Encode(p.Q.Y),
        },
        _ => throw new ArgumentException("key"),
    };

    private static string Base64Url(string text) => Base64UrlEncoder.Encode(Encoding.UTF8.GetBytes(text));
}
