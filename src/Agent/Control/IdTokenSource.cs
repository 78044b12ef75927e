using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;

namespace EphemeralOrleans.Agent.Control;

/// <summary>
/// Where the agent gets an OIDC ID token to register with (workload identity), read afresh for each registration: a
/// file (a CI system or a sidecar keeps it current), a value (<c>EO_ID_TOKEN</c>), or GitHub Actions' token endpoint
/// (<c>ACTIONS_ID_TOKEN_REQUEST_URL</c> with the bearer <c>ACTIONS_ID_TOKEN_REQUEST_TOKEN</c>, for the given audience).
/// </summary>
public abstract class IdTokenSource
{
    public abstract Task<string> GetAsync(CancellationToken cancellationToken);

    public static IdTokenSource FromFile(string path) => new FileSource(path);

    public static IdTokenSource FromValue(string token) => new ValueSource(token);

    /// <summary>GitHub Actions (the job needs <c>permissions: id-token: write</c>); null with the reason when the
    /// environment does not offer a token.</summary>
    public static (IdTokenSource? Source, string? Missing) FromGitHubActions(string audience)
    {
        var url = Environment.GetEnvironmentVariable("ACTIONS_ID_TOKEN_REQUEST_URL");
        var bearer = Environment.GetEnvironmentVariable("ACTIONS_ID_TOKEN_REQUEST_TOKEN");
        return string.IsNullOrEmpty(url) || string.IsNullOrEmpty(bearer)
            ? (null, "--id-token-github needs ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN: run in a GitHub Actions job with `permissions: id-token: write`.")
            : (new GitHubSource(url, bearer, audience), null);
    }

    private sealed class ValueSource(string token) : IdTokenSource
    {
        public override Task<string> GetAsync(CancellationToken cancellationToken) => Task.FromResult(token.Trim());
    }

    private sealed class FileSource(string path) : IdTokenSource
    {
        public override async Task<string> GetAsync(CancellationToken cancellationToken)
        {
            try
            {
                return (await File.ReadAllTextAsync(path, cancellationToken)).Trim();
            }
            catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
            {
                throw new AgentFailure("id_token_unreadable", $"Cannot read the ID token file {path}: {exception.Message}", transient: false);
            }
        }
    }

    private sealed class GitHubSource(string requestUrl, string bearer, string audience) : IdTokenSource
    {
        private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

        public override async Task<string> GetAsync(CancellationToken cancellationToken)
        {
            var url = requestUrl + (requestUrl.Contains('?') ? "&" : "?") + "audience=" + Uri.EscapeDataString(audience);
            using var request = new HttpRequestMessage(HttpMethod.Get, url);
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
            try
            {
                using var response = await Http.SendAsync(request, cancellationToken);
                if (!response.IsSuccessStatusCode)
                {
                    throw new AgentFailure("id_token_unavailable", $"GitHub's token endpoint answered {(int)response.StatusCode}; is `permissions: id-token: write` set for the job?", transient: (int)response.StatusCode >= 500);
                }

                var body = await response.Content.ReadFromJsonAsync<JsonElement>(cancellationToken);
                return body.TryGetProperty("value", out var value) && value.GetString() is { Length: > 0 } token
                    ? token
                    : throw new AgentFailure("id_token_unavailable", "GitHub's token endpoint answered without a token.", transient: false);
            }
            catch (Exception exception) when (exception is HttpRequestException or JsonException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
            {
                throw new AgentFailure("id_token_unavailable", $"GitHub's token endpoint could not be reached: {exception.Message}", transient: true);
            }
        }
    }
}
