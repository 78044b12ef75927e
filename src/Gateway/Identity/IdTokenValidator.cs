using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Contracts.Validation;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Protocols;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Microsoft.IdentityModel.Tokens;

namespace EphemeralOrleans.Gateway.Identity;

/// <summary><c>Identity:*</c>: how OIDC ID tokens are checked.</summary>
public sealed class IdentityOptions
{
    public const string Section = "Identity";

    /// <summary>How far <c>exp</c>, <c>nbf</c> and <c>iat</c> may be off this gateway's clock.</summary>
    public TimeSpan ClockSkew { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The longest lifetime (<c>exp</c> − <c>iat</c>) accepted: a workload's token is short-lived.</summary>
    public TimeSpan MaxTokenLifetime { get; set; } = TimeSpan.FromHours(1);

    /// <summary>How long an issuer's discovery document and keys are used before they are fetched again.</summary>
    public TimeSpan KeyCacheLifetime { get; set; } = TimeSpan.FromHours(1);

    /// <summary>The least time between two fetches of an issuer's keys for a token with an unknown <c>kid</c>: a flood
    /// of made-up key ids cannot hammer the issuer.</summary>
    public TimeSpan UnknownKeyRefreshInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a discovery or key fetch may take.</summary>
    public TimeSpan FetchTimeout { get; set; } = TimeSpan.FromSeconds(5);
}

/// <summary>A token that checked out: the policy it matched, its subject, and what replay protection keys it by.</summary>
public sealed record ValidatedIdToken(TrustPolicy Policy, string Subject, string ReplayKey, DateTimeOffset ExpiresAt);

/// <summary>
/// Checks an OIDC ID token against a tailnet's trust policies. The issuer's discovery document and JWKS are fetched on
/// first use and cached (<see cref="IdentityOptions.KeyCacheLifetime"/>); a token signed with a key id the cache does not
/// know makes one refetch, at most once per <see cref="IdentityOptions.UnknownKeyRefreshInterval"/>, so keys the issuer
/// rotates in are picked up without a restart. Only asymmetric signatures count (RS*, PS*, ES*: <c>none</c> and HS*
/// are refused before any key is looked at). <c>iss</c>, <c>aud</c>, <c>exp</c>, <c>nbf</c> and <c>iat</c> are
/// required and checked with a small skew, the lifetime is bounded, and then the subject and claims must match one
/// policy. The token itself is never logged or kept: replay protection keys it by <c>jti</c>, or a hash.
/// </summary>
public sealed partial class IdTokenValidator(IOptions<IdentityOptions> options, TimeProvider time, ILogger<IdTokenValidator> logger)
{
    private static readonly string[] Algorithms =
    [
        SecurityAlgorithms.RsaSha256, SecurityAlgorithms.RsaSha384, SecurityAlgorithms.RsaSha512,
        SecurityAlgorithms.RsaSsaPssSha256, SecurityAlgorithms.RsaSsaPssSha384, SecurityAlgorithms.RsaSsaPssSha512,
        SecurityAlgorithms.EcdsaSha256, SecurityAlgorithms.EcdsaSha384, SecurityAlgorithms.EcdsaSha512,
    ];

    private readonly IdentityOptions _options = options.Value;
    private readonly JsonWebTokenHandler _handler = new() { SetDefaultTimesOnTokenCreation = false };
    private readonly ConcurrentDictionary<string, IssuerKeys> _issuers = new(StringComparer.Ordinal);
    private readonly HttpClient _http = new() { Timeout = options.Value.FetchTimeout };

    /// <summary>The policy of <paramref name="policies"/> that <paramref name="token"/> satisfies; refuses with the
    /// reason otherwise.</summary>
    public async Task<ValidatedIdToken> ValidateAsync(string token, IReadOnlyCollection<TrustPolicy> policies, CancellationToken cancellationToken)
    {
        JsonWebToken jwt;
        try
        {
            jwt = _handler.ReadJsonWebToken(token);
        }
        catch (Exception exception) when (exception is ArgumentException or SecurityTokenException)
        {
            throw Refused("token_malformed", "The ID token is not a JWT (three base64url parts).");
        }

        var issuer = jwt.Issuer?.TrimEnd('/') ?? "";
        var fromIssuer = policies.Where(p => p.Spec.Issuer == issuer).ToList();
        if (fromIssuer.Count == 0)
        {
            throw Refused("token_issuer", "No trust policy of this tailnet accepts tokens from the token's issuer.");
        }

        var audiences = jwt.Audiences.ToHashSet(StringComparer.Ordinal);
        var forAudience = fromIssuer.Where(p => p.Spec.Audiences.Any(audiences.Contains)).ToList();
        if (forAudience.Count == 0)
        {
            throw Refused("token_audience", "The token's audience is not one a trust policy for its issuer accepts.");
        }

        if (!Algorithms.Contains(jwt.Alg, StringComparer.Ordinal))
        {
            throw Refused("token_signature", $"Tokens signed with '{jwt.Alg}' are not accepted: only asymmetric algorithms (RS*, PS*, ES*).");
        }

        var parameters = new TokenValidationParameters
        {
            ValidIssuer = jwt.Issuer,
            ValidAudiences = forAudience.SelectMany(p => p.Spec.Audiences).Distinct(StringComparer.Ordinal),
            ValidAlgorithms = Algorithms,
            ClockSkew = _options.ClockSkew,
            RequireExpirationTime = true,
            RequireSignedTokens = true,
            ValidateLifetime = true,
            LifetimeValidator = null,
            TryAllIssuerSigningKeys = false,
        };
        var keys = Issuer(issuer);
        var configuration = await ConfigurationAsync(keys, issuer, cancellationToken);
        var result = await ValidateWithAsync(jwt, parameters, configuration);
        if (result.Exception is SecurityTokenSignatureKeyNotFoundException && keys.TryStartRefresh(time.GetUtcNow(), _options.UnknownKeyRefreshInterval))
        {
            // A key the cache does not know: the issuer may have rotated. Refetched at most once per interval (calls in
            // between are refused at once); this call waits for the fetch it started.
            keys.Manager.RequestRefresh();
            var deadline = time.GetUtcNow() + _options.FetchTimeout;
            while (true)
            {
                var current = await ConfigurationAsync(keys, issuer, cancellationToken);
                if (!ReferenceEquals(current, configuration))
                {
                    result = await ValidateWithAsync(jwt, parameters, current);
                    break;
                }

                if (time.GetUtcNow() >= deadline)
                {
                    break;
                }

                await Task.Delay(TimeSpan.FromMilliseconds(50), time, cancellationToken);
            }
        }

        if (!result.IsValid)
        {
            throw result.Exception switch
            {
                SecurityTokenExpiredException => Refused("token_expired", "The token has expired."),
                SecurityTokenNotYetValidException => Refused("token_not_yet_valid", "The token is not valid yet (nbf is in the future)."),
                SecurityTokenNoExpirationException => Refused("token_expired", "The token has no expiry (exp)."),
                SecurityTokenInvalidAudienceException => Refused("token_audience", "The token's audience is not accepted."),
                SecurityTokenInvalidIssuerException => Refused("token_issuer", "The token's issuer is not accepted."),
                SecurityTokenInvalidAlgorithmException => Refused("token_signature", $"Tokens signed with '{jwt.Alg}' are not accepted."),
                SecurityTokenSignatureKeyNotFoundException => Refused("token_signature", "The token is signed with a key the issuer does not publish."),
                _ => Refused("token_signature", "The token's signature does not verify with the issuer's keys."),
            };
        }

        var now = time.GetUtcNow();
        if (!jwt.TryGetPayloadValue<long>("iat", out var issuedAtSeconds))
        {
            throw Refused("token_lifetime", "The token has no issue time (iat).");
        }

        var issuedAt = DateTimeOffset.FromUnixTimeSeconds(issuedAtSeconds);
        var expiresAt = new DateTimeOffset(jwt.ValidTo, TimeSpan.Zero);
        if (issuedAt > now + _options.ClockSkew)
        {
            throw Refused("token_not_yet_valid", "The token's issue time (iat) is in the future.");
        }

        if (expiresAt - issuedAt > _options.MaxTokenLifetime)
        {
            throw Refused("token_lifetime", $"The token lives {(expiresAt - issuedAt).TotalMinutes:0} min; at most {_options.MaxTokenLifetime.TotalMinutes:0} min is accepted.");
        }

        var subject = jwt.Subject ?? "";
        var matched = forAudience
            .OrderBy(p => p.CreatedAt)
            .FirstOrDefault(p => subject.Length > 0 && TrustPolicyRules.SubjectMatches(p.Spec.Subject, subject)
                && p.Spec.Claims.All(c => jwt.TryGetPayloadValue<string>(c.Key, out var value) && value == c.Value));
        if (matched is null)
        {
            throw Refused("token_subject", "The token's subject or claims match no trust policy for its issuer and audience.");
        }

        var id = jwt.Id is { Length: > 0 } jti ? "jti:" + jti : "sha256:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token)));
        var replayKey = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(issuer + "\n" + id)));
        return new ValidatedIdToken(matched, subject, replayKey, expiresAt);
    }

    private async Task<OpenIdConnectConfiguration> ConfigurationAsync(IssuerKeys keys, string issuer, CancellationToken cancellationToken)
    {
        try
        {
            return await keys.Manager.GetConfigurationAsync(cancellationToken);
        }
        catch (Exception exception) when (exception is InvalidOperationException or HttpRequestException or IOException or TaskCanceledException)
        {
            LogIssuerUnavailable(exception, issuer);
            throw new ControlPlaneException(new Failure(FailureKind.Dependency, "issuer_unavailable",
                "The token's issuer could not be reached for its keys; try again shortly."));
        }
    }

    private async Task<TokenValidationResult> ValidateWithAsync(JsonWebToken jwt, TokenValidationParameters parameters, OpenIdConnectConfiguration configuration)
    {
        parameters.IssuerSigningKeys = configuration.SigningKeys;
        return await _handler.ValidateTokenAsync(jwt, parameters);
    }

    private IssuerKeys Issuer(string issuer) => _issuers.GetOrAdd(issuer, url =>
    {
        var retriever = new HttpDocumentRetriever(_http) { RequireHttps = new Uri(url).Scheme == Uri.UriSchemeHttps };
        return new IssuerKeys(new ConfigurationManager<OpenIdConnectConfiguration>(url + "/.well-known/openid-configuration", new OpenIdConnectConfigurationRetriever(), retriever)
        {
            // The library's floors: 5 min and 1 s.
            AutomaticRefreshInterval = TimeSpan.FromTicks(Math.Max(_options.KeyCacheLifetime.Ticks, BaseConfigurationManager.MinimumAutomaticRefreshInterval.Ticks)),
            RefreshInterval = TimeSpan.FromTicks(Math.Max(_options.UnknownKeyRefreshInterval.Ticks, BaseConfigurationManager.MinimumRefreshInterval.Ticks)),
        });
    });

    /// <summary>One issuer's cached configuration, and when a token with an unknown key id last made it refetch.</summary>
    private sealed class IssuerKeys(ConfigurationManager<OpenIdConnectConfiguration> manager)
    {
        private readonly Lock _lock = new();
        private DateTimeOffset _lastRefresh = DateTimeOffset.MinValue;

        public ConfigurationManager<OpenIdConnectConfiguration> Manager { get; } = manager;

        public bool TryStartRefresh(DateTimeOffset now, TimeSpan interval)
        {
            lock (_lock)
            {
                if (now - _lastRefresh < interval)
                {
                    return false;
                }

                _lastRefresh = now;
                return true;
            }
        }
    }

    private static ControlPlaneException Refused(string code, string detail) => new(Failure.Unauthenticated(code, detail));

    [LoggerMessage(Level = LogLevel.Warning, Message = "OIDC issuer {Issuer} could not be reached for its keys")]
    private partial void LogIssuerUnavailable(Exception exception, string issuer);
}
