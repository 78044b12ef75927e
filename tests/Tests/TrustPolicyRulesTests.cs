using EphemeralOrleans.Contracts.Validation;

namespace EphemeralOrleans.Tests;

/// <summary>How a trust policy's subject pattern matches a token's subject, and which issuers a policy may name.</summary>
public sealed class TrustPolicyRulesTests
{
    [Theory]
    [InlineData("repo:acme/api:ref:refs/heads/main", "repo:acme/api:ref:refs/heads/main", true)]
    [InlineData("repo:acme/api:ref:refs/heads/main", "repo:acme/api:ref:refs/heads/mainx", false)]
    [InlineData("repo:acme/api:ref:refs/heads/*", "repo:acme/api:ref:refs/heads/feature/x", true)]
    [InlineData("repo:acme/*:ref:refs/heads/main", "repo:acme/web:ref:refs/heads/main", true)]
    [InlineData("repo:acme/*:ref:refs/heads/main", "repo:acme/web:ref:refs/heads/dev", false)]
    [InlineData("repo:acme/api:environment:pr?d", "repo:acme/api:environment:prod", true)]
    [InlineData("repo:acme/api:environment:pr?d", "repo:acme/api:environment:prd", false)]
    [InlineData("*", "anything at all", true)]
    [InlineData("a*b*c", "aXXbYYc", true)]
    [InlineData("a*b*c", "aXXbYY", false)]
    [InlineData("repo:acme/api", "REPO:acme/api", false)]
    public void Subjects_match_exactly_or_by_glob(string pattern, string subject, bool matches) =>
        Assert.Equal(matches, TrustPolicyRules.SubjectMatches(pattern, subject));

    [Theory]
    [InlineData("https://token.actions.githubusercontent.com", true)]
    [InlineData("https://gitlab.example.com/", true)]
    [InlineData("http://127.0.0.1:5000", true)]
    [InlineData("http://[::1]:5000", true)]
    [InlineData("http://localhost:5000", true)]
    [InlineData("http://issuer.example", false)]
    [InlineData("https://issuer.example/?x=1", false)]
    [InlineData("https://user:pass@issuer.example", false)]
    [InlineData("not a url", false)]
    public void Issuers_are_https_or_loopback_http(string issuer, bool accepted) =>
        Assert.Equal(accepted, TrustPolicyRules.TryIssuer(issuer, out _));
}
