using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using EphemeralOrleans.Tests.Infrastructure;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.Routing;

namespace EphemeralOrleans.Tests;

/// <summary>
/// The OpenAPI document (<c>/openapi/v1.json</c>) against the gateway itself: every API route it maps is documented
/// (and nothing else), and a tour of the API that calls every documented operation finds each response — status,
/// content type and JSON shape — as the document says: no undocumented status, no undocumented property, no missing
/// required one, no value of another type.
/// </summary>
public sealed class OpenApiTests : GatewayTest
{
    [Fact]
    public async Task Every_api_route_is_in_the_document_and_the_reference_serves_it()
    {
        var document = await DocumentAsync();
        var documented = Operations(document).Select(o => (o.Method, o.Path)).ToHashSet();
        var mapped = ApiRoutes();
        Assert.Contains(("POST", "/api/v1/tailnets/{tailnet}/keys"), mapped);
        Assert.True(mapped.Count >= 30, $"only {mapped.Count} routes found");
        var missing = mapped.Except(documented).ToArray();
        Assert.True(missing.Length == 0, "mapped but not documented: " + string.Join(", ", missing));
        var stale = documented.Except(mapped).ToArray();
        Assert.True(stale.Length == 0, "documented but not mapped: " + string.Join(", ", stale));

        // Every operation says what its refusals look like (problem+json), and the admin ones that they need the key.
        foreach (var (method, path, operation) in Operations(document))
        {
            var problems = operation.GetProperty("responses").EnumerateObject().Where(r => r.Name.StartsWith('4') || r.Name.StartsWith('5')).ToArray();
            if (path.StartsWith("/api/", StringComparison.Ordinal))
            {
                Assert.True(problems.Length > 0, $"{method} {path} documents no refusal");
                Assert.All(problems.Where(p => p.Value.TryGetProperty("content", out _)), p =>
                    Assert.True(p.Value.GetProperty("content").TryGetProperty("application/problem+json", out _), $"{method} {path} {p.Name} is not problem+json"));
            }
        }

        Assert.Equal("bearer", document.GetProperty("components").GetProperty("securitySchemes").GetProperty("bearer").GetProperty("scheme").GetString());

        // The interactive reference: a page that loads this document (its URL relative to the application's root),
        // with its script served by the gateway itself (no CDN: a gateway may have no way out).
        using var page = await Gateway.Http.GetAsync("/api/docs");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        var html = await page.Content.ReadAsStringAsync();
        Assert.Contains("\"url\":\"openapi/v1.json\"", html);
        Assert.Contains("<script src=\"scalar.js\">", html);
        using var script = await Gateway.Http.GetAsync(new Uri(page.RequestMessage!.RequestUri!, "scalar.js"));
        Assert.Equal(HttpStatusCode.OK, script.StatusCode);
        Assert.True((await script.Content.ReadAsByteArrayAsync()).Length > 100_000, "the reference's script is not served");
    }

    [Fact]
    public async Task Documenting_json_bodies_refuses_no_client_that_sends_json_under_another_content_type()
    {
        // curl -d sends form encoding, a bare StringContent text/plain: bodies are read as JSON whatever the header says,
        // as before the document existed (an endpoint documented with application/json alone was answered 415, empty).
        const string policy = """{"acls":[{"action":"accept","src":["tag:ci"],"dst":["tag:ci:*"]}]}""";
        foreach (var contentType in new[] { "text/plain", "application/x-www-form-urlencoded" })
        {
            using var put = new HttpRequestMessage(HttpMethod.Put, "/api/v1/tailnets/-/policy") { Content = new StringContent(policy, Encoding.UTF8, contentType) };
            using var response = await Gateway.Admin.SendAsync(put);
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{contentType}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
            Assert.Contains("tag:ci", await response.Content.ReadAsStringAsync());

            using var key = await Gateway.Admin.PostAsync("/api/v1/tailnets/-/keys", new StringContent("""{"ephemeral":true,"tags":["tag:ci"]}""", Encoding.UTF8, contentType));
            Assert.True(key.StatusCode == HttpStatusCode.Created, $"{contentType}: {(int)key.StatusCode} {await key.Content.ReadAsStringAsync()}");
        }
    }

    [Fact]
    public async Task Every_documented_operation_answers_in_the_shape_the_document_gives()
    {
        var document = await DocumentAsync();
        var tour = new Tour(document, Gateway);

        await tour.CallAsync("GET", "/healthz");
        await tour.CallAsync("GET", "/readyz");
        await tour.CallAsync("GET", "/api/v1/machine/endpoints");
        await tour.CallAsync("GET", "/api/v1/admin/events", admin: true, query: "?limit=5");

        var key = await tour.CallAsync("POST", "/api/v1/tailnets/{tailnet}/keys", admin: true,
            body: new { reusable = true, ephemeral = false, preauthorized = true, tags = Array.Empty<string>(), description = "tour" });
        var keyId = key.GetProperty("id").GetString()!;
        await tour.CallAsync("GET", "/api/v1/tailnets/{tailnet}/keys", admin: true);
        await tour.CallAsync("GET", "/api/v1/tailnets/{tailnet}/keys/{id}", admin: true, id: keyId);
        await tour.CallAsync("GET", "/api/v1/tailnets/{tailnet}/keys/{id}", admin: true, id: "kNoSuchKey000", expect: HttpStatusCode.NotFound);

        var registered = await tour.CallAsync("POST", "/api/v1/machine/register",
            body: new { authKey = key.GetProperty("key").GetString(), nodeKey = ApiClient.NewNodeKey(), hostname = "tour" });
        await tour.CallAsync("POST", "/api/v1/machine/register", body: new { authKey = "eo-auth-nosuchkey", nodeKey = ApiClient.NewNodeKey(), hostname = "x" },
            expect: HttpStatusCode.Unauthorized);
        var token = registered.GetProperty("nodeToken").GetString()!;
        var nodeId = registered.GetProperty("node").GetProperty("id").GetString()!;
        await tour.CallAsync("PUT", "/api/v1/machine/self/endpoints", token: token, body: new { endpoints = new[] { "198.18.0.1:41641" } });
        await tour.MapAsync(token);
        await tour.CallAsync("GET", "/api/v1/machine/relay", token: token, expect: HttpStatusCode.BadRequest); // not a WebSocket

        await tour.CallAsync("GET", "/api/v1/tailnets/{tailnet}/nodes", admin: true);
        await tour.CallAsync("GET", "/api/v1/tailnets/{tailnet}/nodes/{id}", admin: true, id: nodeId);
        await tour.CallAsync("POST", "/api/v1/tailnets/{tailnet}/nodes/{id}/rename", admin: true, id: nodeId, body: new { name = "toured" });
        await tour.CallAsync("POST", "/api/v1/tailnets/{tailnet}/nodes/{id}/approve", admin: true, id: nodeId);

        var policy = await tour.CallAsync("GET", "/api/v1/tailnets/{tailnet}/policy", admin: true);
        await tour.CallAsync("PUT", "/api/v1/tailnets/{tailnet}/policy", admin: true, body: policy);

        var trust = await tour.CallAsync("POST", "/api/v1/tailnets/{tailnet}/trust-policies", admin: true,
            body: new { issuer = "https://issuer.example", audiences = new[] { "eo" }, subject = "repo:acme/*", description = "tour" });
        var trustId = trust.GetProperty("id").GetString()!;
        await tour.CallAsync("GET", "/api/v1/tailnets/{tailnet}/trust-policies", admin: true);
        await tour.CallAsync("GET", "/api/v1/tailnets/{tailnet}/trust-policies/{id}", admin: true, id: trustId);
        await tour.CallAsync("PUT", "/api/v1/tailnets/{tailnet}/trust-policies/{id}", admin: true, id: trustId,
            body: new { issuer = "https://issuer.example", audiences = new[] { "eo" }, subject = "repo:acme/web", claims = new Dictionary<string, string> { ["ref"] = "refs/heads/main" } });
        await tour.CallAsync("DELETE", "/api/v1/tailnets/{tailnet}/trust-policies/{id}", admin: true, id: trustId);

        var webhook = await tour.CallAsync("POST", "/api/v1/tailnets/{tailnet}/webhooks", admin: true,
            body: new { url = "http://127.0.0.1:9/hook", types = new[] { "node.*" }, description = "tour" });
        var webhookId = webhook.GetProperty("id").GetString()!;
        await tour.CallAsync("GET", "/api/v1/tailnets/{tailnet}/webhooks", admin: true);
        await tour.CallAsync("GET", "/api/v1/tailnets/{tailnet}/webhooks/{id}", admin: true, id: webhookId);
        await tour.CallAsync("GET", "/api/v1/tailnets/{tailnet}/webhooks/{id}/attempts", admin: true, id: webhookId);
        await tour.CallAsync("POST", "/api/v1/tailnets/{tailnet}/webhooks/{id}/resume", admin: true, id: webhookId);
        await tour.CallAsync("DELETE", "/api/v1/tailnets/{tailnet}/webhooks/{id}", admin: true, id: webhookId);

        await tour.CallAsync("GET", "/api/v1/tailnets/{tailnet}/settings", admin: true);
        await tour.CallAsync("PATCH", "/api/v1/tailnets/{tailnet}/settings", admin: true, body: new { deviceApproval = false });
        await tour.CallAsync("GET", "/api/v1/tailnets/{tailnet}/events", admin: true, query: "?limit=50");
        await tour.CallAsync("GET", "/api/v1/tailnets/{tailnet}/events", admin: true, query: "?limit=x", expect: HttpStatusCode.BadRequest);

        await tour.CallAsync("POST", "/api/v1/machine/logout", token: token);
        var other = await tour.CallAsync("POST", "/api/v1/machine/register",
            body: new { authKey = key.GetProperty("key").GetString(), nodeKey = ApiClient.NewNodeKey(), hostname = "tour-2" });
        var otherId = other.GetProperty("node").GetProperty("id").GetString()!;
        await tour.CallAsync("POST", "/api/v1/tailnets/{tailnet}/nodes/{id}/expire", admin: true, id: otherId);
        await tour.CallAsync("DELETE", "/api/v1/tailnets/{tailnet}/nodes/{id}", admin: true, id: otherId);
        await tour.CallAsync("DELETE", "/api/v1/tailnets/{tailnet}/keys/{id}", admin: true, id: keyId);

        Assert.True(tour.Mismatches.Count == 0, "responses that differ from the document:\n" + string.Join("\n", tour.Mismatches));
        var untoured = Operations(document).Select(o => (o.Method, o.Path)).Except(tour.Called).ToArray();
        Assert.True(untoured.Length == 0, "documented operations this tour does not call (add them): " + string.Join(", ", untoured));
    }

    private async Task<JsonElement> DocumentAsync()
    {
        using var response = await Gateway.Http.GetAsync("/openapi/v1.json");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
    }

    private static IEnumerable<(string Method, string Path, JsonElement Operation)> Operations(JsonElement document) =>
        document.GetProperty("paths").EnumerateObject().SelectMany(path => path.Value.EnumerateObject()
            .Where(o => o.Name is "get" or "put" or "post" or "delete" or "patch")
            .Select(o => (o.Name.ToUpperInvariant(), path.Name, o.Value)));

    /// <summary>The HTTP API's routes as the gateway maps them: the agent and admin API and health, not the console,
    /// the dashboard, metrics, gRPC or the document and its reference themselves.</summary>
    private HashSet<(string Method, string Path)> ApiRoutes() =>
        Gateway.Service<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .Select(e => (Endpoint: e, Path: "/" + e.RoutePattern.RawText!.TrimStart('/')))
            .Where(e => (e.Path.StartsWith("/api/v1/", StringComparison.Ordinal) || e.Path is "/healthz" or "/readyz"))
            .SelectMany(e => (e.Endpoint.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? []).Select(m => (m, e.Path)))
            .ToHashSet();

    /// <summary>Calls operations, checks each answer against the document, and remembers which it called.</summary>
    private sealed class Tour(JsonElement document, TestGateway gateway)
    {
        public List<string> Mismatches { get; } = [];

        public HashSet<(string Method, string Path)> Called { get; } = [];

        public async Task<JsonElement> CallAsync(string method, string path, bool admin = false, string? token = null, string? id = null,
            object? body = null, string query = "", HttpStatusCode? expect = null)
        {
            var url = path.Replace("{tailnet}", "-").Replace("{id}", id) + query;
            using var request = new HttpRequestMessage(new HttpMethod(method), url);
            if (body is not null)
            {
                request.Content = body is JsonElement json
                    ? new StringContent(json.GetRawText(), Encoding.UTF8, "application/json")
                    : JsonContent.Create(body);
            }

            if ((admin ? ApiClient.AdminKey : token) is { } credential)
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", credential);
            }

            using var response = await gateway.Http.SendAsync(request);
            var text = await response.Content.ReadAsStringAsync();
            if (expect is { } expected ? response.StatusCode != expected : !response.IsSuccessStatusCode)
            {
                throw new Xunit.Sdk.XunitException($"{method} {url}: {(int)response.StatusCode} {text}");
            }

            Check(method, path, (int)response.StatusCode, response.Content.Headers.ContentType?.MediaType, text);
            return text.Length > 0 ? JsonDocument.Parse(text).RootElement.Clone() : default;
        }

        /// <summary>Opens the map stream and checks its first line (the full map) against the documented line.</summary>
        public async Task MapAsync(string token)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/machine/map");
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            using var response = await gateway.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            var line = await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Contains("\"type\":\"full\"", line);
            Check("GET", "/api/v1/machine/map", (int)response.StatusCode, response.Content.Headers.ContentType?.MediaType, line!);
        }

        private void Check(string method, string path, int status, string? contentType, string text)
        {
            Called.Add((method, path));
            var where = $"{method} {path} {status}";
            if (!document.GetProperty("paths").TryGetProperty(path, out var item) || !item.TryGetProperty(method.ToLowerInvariant(), out var operation))
            {
                Mismatches.Add($"{where}: not in the document");
                return;
            }

            if (!operation.GetProperty("responses").TryGetProperty(status.ToString(System.Globalization.CultureInfo.InvariantCulture), out var documented))
            {
                Mismatches.Add($"{where}: status not documented");
                return;
            }

            if (text.Length == 0)
            {
                if (documented.TryGetProperty("content", out _) && status != 200)
                {
                    Mismatches.Add($"{where}: documented with a body, answered without");
                }

                return;
            }

            if (!documented.TryGetProperty("content", out var content) || contentType is null || !content.TryGetProperty(contentType, out var media))
            {
                Mismatches.Add($"{where}: content type {contentType} not documented");
                return;
            }

            var errors = new List<string>();
            Schema.Validate(JsonDocument.Parse(text).RootElement, media.GetProperty("schema"), document, "$", errors);
            Mismatches.AddRange(errors.Select(e => $"{where}: {e}"));
        }
    }

    /// <summary>Just enough of JSON Schema (as ASP.NET Core's generator writes it) to compare a response with its documentation.</summary>
    private static class Schema
    {
        public static void Validate(JsonElement value, JsonElement schema, JsonElement document, string at, List<string> errors)
        {
            if (schema.TryGetProperty("$ref", out var reference))
            {
                schema = Resolve(document, reference.GetString()!);
            }

            foreach (var keyword in new[] { "anyOf", "oneOf" })
            {
                if (schema.TryGetProperty(keyword, out var branches))
                {
                    var attempts = branches.EnumerateArray().Select(branch =>
                    {
                        var branchErrors = new List<string>();
                        Validate(value, branch, document, at, branchErrors);
                        return branchErrors;
                    }).ToArray();
                    if (!attempts.Any(a => a.Count == 0))
                    {
                        errors.Add($"{at}: matches none of {keyword} ({string.Join("; ", attempts.MinBy(a => a.Count)!)})");
                    }

                    return;
                }
            }

            var types = schema.TryGetProperty("type", out var type)
                ? type.ValueKind == JsonValueKind.Array ? type.EnumerateArray().Select(t => t.GetString()!).ToArray() : [type.GetString()!]
                : null;
            if (types is not null && !types.Any(t => Is(value, t)))
            {
                errors.Add($"{at}: {value.ValueKind} where the document says {string.Join(" or ", types)}");
                return;
            }

            if (value.ValueKind == JsonValueKind.Object)
            {
                var properties = schema.TryGetProperty("properties", out var declared) ? declared : default;
                var additional = schema.TryGetProperty("additionalProperties", out var more) ? more : default;
                foreach (var property in value.EnumerateObject())
                {
                    if (properties.ValueKind == JsonValueKind.Object && properties.TryGetProperty(property.Name, out var propertySchema))
                    {
                        Validate(property.Value, propertySchema, document, $"{at}.{property.Name}", errors);
                    }
                    else if (additional.ValueKind == JsonValueKind.Object)
                    {
                        Validate(property.Value, additional, document, $"{at}.{property.Name}", errors);
                    }
                    else if (additional.ValueKind != JsonValueKind.True && (types is not null || properties.ValueKind == JsonValueKind.Object))
                    {
                        errors.Add($"{at}.{property.Name}: not in the document");
                    }
                }

                if (schema.TryGetProperty("required", out var required))
                {
                    foreach (var name in required.EnumerateArray().Select(r => r.GetString()!).Where(name => !value.TryGetProperty(name, out _)))
                    {
                        errors.Add($"{at}.{name}: required by the document, missing");
                    }
                }
            }
            else if (value.ValueKind == JsonValueKind.Array && schema.TryGetProperty("items", out var items))
            {
                var index = 0;
                foreach (var item in value.EnumerateArray())
                {
                    Validate(item, items, document, $"{at}[{index++}]", errors);
                }
            }
        }

        private static JsonElement Resolve(JsonElement document, string reference)
        {
            var element = document;
            foreach (var part in reference.TrimStart('#', '/').Split('/'))
            {
                element = element.GetProperty(part.Replace("~1", "/").Replace("~0", "~"));
            }

            return element;
        }

        private static bool Is(JsonElement value, string type) => type switch
        {
            "object" => value.ValueKind == JsonValueKind.Object,
            "array" => value.ValueKind == JsonValueKind.Array,
            "string" => value.ValueKind == JsonValueKind.String,
            "integer" => value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out _),
            "number" => value.ValueKind == JsonValueKind.Number,
            "boolean" => value.ValueKind is JsonValueKind.True or JsonValueKind.False,
            "null" => value.ValueKind == JsonValueKind.Null,
            _ => false,
        };
    }
}
