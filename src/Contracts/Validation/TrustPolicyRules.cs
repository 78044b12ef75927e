using System.Collections.Immutable;
using System.Net;
using EphemeralOrleans.Contracts.Model;

namespace EphemeralOrleans.Contracts.Validation;

/// <summary>What a trust policy may say, and how a token's subject and claims are matched against it.</summary>
public static class TrustPolicyRules
{
    public const int MaxAudiences = 16;
    public const int MaxClaims = 16;
    public const int MaxTextLength = 512;

    /// <summary>The policy as given, checked and normalized (issuer without a trailing <c>/</c>, audiences and tags
    /// distinct and sorted), or the refusal for its first fault.</summary>
    public static (TrustPolicySpec? Spec, Failure? Failure) Normalize(string? issuer, IEnumerable<string>? audiences, string? subject,
        IReadOnlyDictionary<string, string>? claims, IEnumerable<string>? tags, bool needsApproval, string? description)
    {
        if (!TryIssuer(issuer, out var normalizedIssuer))
        {
            return (null, Failure.Invalid("invalid_issuer", "issuer must be an https URL (http only for a loopback address), without query or fragment."));
        }

        var audienceList = (audiences ?? []).Select(a => a?.Trim() ?? "").Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToImmutableArray();
        if (audienceList.Length is 0 or > MaxAudiences || audienceList.Any(a => a.Length is 0 or > MaxTextLength))
        {
            return (null, Failure.Invalid("invalid_audience", $"audiences must be 1 to {MaxAudiences} non-empty strings."));
        }

        if (string.IsNullOrWhiteSpace(subject) || subject.Length > MaxTextLength || subject != subject.Trim())
        {
            return (null, Failure.Invalid("invalid_subject", "subject must be the token subject to accept, exact or a glob with * and ?."));
        }

        var claimMap = ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, claims ?? new Dictionary<string, string>());
        if (claimMap.Count > MaxClaims || claimMap.Any(c => c.Key.Length is 0 or > 128 || c.Value is null || c.Value.Length > MaxTextLength)
            || claimMap.Keys.Any(k => k is "iss" or "aud" or "sub" or "exp" or "nbf" or "iat" or "jti"))
        {
            return (null, Failure.Invalid("invalid_claims", $"claims must be at most {MaxClaims} names (not iss, aud, sub, exp, nbf, iat, jti) each with the exact string value required."));
        }

        var tagList = (tags ?? []).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToImmutableArray();
        if (tagList.Any(t => !Identifiers.IsTag(t)))
        {
            return (null, Failure.Invalid("invalid_tags", "tags must look like tag:name (a-z, 0-9, -)."));
        }

        // As for keys and webhooks: shown in the console and the CLI, so printable text only.
        var shown = description is null ? null : Identifiers.DisplayText(description);
        if (description is not null && (shown is null || shown.Length > MaxTextLength))
        {
            return (null, Failure.Invalid("invalid_description", $"description must be at most {MaxTextLength} printable characters."));
        }

        return (new TrustPolicySpec(normalizedIssuer!, audienceList, subject, claimMap, tagList, needsApproval, string.IsNullOrWhiteSpace(shown) ? null : shown.Trim()), null);
    }

    /// <summary>An issuer URL as tokens carry it: https, or http for loopback (tests, a local issuer).</summary>
    public static bool TryIssuer(string? issuer, out string? normalized)
    {
        normalized = null;
        if (!Uri.TryCreate(issuer?.Trim(), UriKind.Absolute, out var uri) || !string.IsNullOrEmpty(uri.Query) || !string.IsNullOrEmpty(uri.Fragment)
            || !string.IsNullOrEmpty(uri.UserInfo) || issuer!.Length > MaxTextLength)
        {
            return false;
        }

        var loopback = uri.IsLoopback || (IPAddress.TryParse(uri.Host.Trim('[', ']'), out var address) && IPAddress.IsLoopback(address));
        if (uri.Scheme != Uri.UriSchemeHttps && !(uri.Scheme == Uri.UriSchemeHttp && loopback))
        {
            return false;
        }

        normalized = issuer.Trim().TrimEnd('/');
        return true;
    }

    /// <summary>Whether <paramref name="subject"/> matches <paramref name="pattern"/>: <c>*</c> any run of characters
    /// (colons and slashes too), <c>?</c> one character, everything else itself.</summary>
    public static bool SubjectMatches(string pattern, string subject)
    {
        var (p, s, star, mark) = (0, 0, -1, 0);
        while (s < subject.Length)
        {
            if (p < pattern.Length && (pattern[p] == '?' || pattern[p] == subject[s]) && pattern[p] != '*')
            {
                p++;
                s++;
            }
            else if (p < pattern.Length && pattern[p] == '*')
            {
                star = p++;
                mark = s;
            }
            else if (star >= 0)
            {
                p = star + 1;
                s = ++mark;
            }
            else
            {
                return false;
            }
        }

        while (p < pattern.Length && pattern[p] == '*')
        {
            p++;
        }

        return p == pattern.Length;
    }
}
