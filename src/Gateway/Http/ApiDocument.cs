using System.Text.Json.Serialization;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;
using Scalar.AspNetCore;

namespace EphemeralOrleans.Gateway.Http;

/// <summary>
/// The HTTP API's OpenAPI document at <c>/openapi/v1.json</c> (generated from the endpoints and their metadata, so it
/// cannot drift from the routes; <c>OpenApiTests</c> holds the shapes to it) and an interactive reference at
/// <c>/api/docs</c>. Both public: they hold no secret, and every operation still needs its credential.
/// </summary>
public static class ApiDocument
{
    public const string Route = "/openapi/{documentName}.json";
    public const string ReferenceRoute = "/api/docs";
    private const string Bearer = "bearer";

    /// <summary>Documents a JSON request body of type <typeparamref name="T"/>. Bodies are read as JSON whatever their
    /// Content-Type (<c>curl -d</c> sends form encoding), as they were before the document: declared with
    /// <c>application/json</c> alone, routing would refuse every other type with an empty 415.</summary>
    public static RouteHandlerBuilder AcceptsJson<T>(this RouteHandlerBuilder builder) where T : notnull =>
        builder.Accepts<T>("application/json", "*/*");

    /// <summary>Marks routes that take a bearer credential (the admin key, or a node token): the document's security
    /// requirement is read from this mark, where the route is mapped, not from a list of paths.</summary>
    public static TBuilder RequiresBearer<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(BearerCredential.Instance);

    public static IServiceCollection AddApiDocument(this IServiceCollection services) => services.AddOpenApi("v1", options =>
    {
        // The agent and admin API and health; not the console's pages, the dashboard, metrics or gRPC.
        options.ShouldInclude = description => description.RelativePath is { } path
            && ((path.StartsWith("api/v1/", StringComparison.Ordinal)) || path is "healthz" or "readyz");
        options.AddDocumentTransformer((document, _, _) =>
        {
            document.Info = new OpenApiInfo
            {
                Title = "EphemeralOrleans",
                Version = "v1",
                Description = "Agents register and follow their netmap under /api/v1/machine (a node token as bearer after "
                    + "registration); operators manage tailnets under /api/v1/tailnets/{tailnet} (the admin API key as bearer; `-` "
                    + "is the default tailnet). Every refusal is an RFC 7807 problem with a stable `code`. The same calls exist over gRPC.",
            };
            document.Components ??= new OpenApiComponents();
            document.Components.SecuritySchemes = new Dictionary<string, IOpenApiSecurityScheme>
            {
                [Bearer] = new OpenApiSecurityScheme
                {
                    Type = SecuritySchemeType.Http,
                    Scheme = Bearer,
                    Description = "The admin API key (admin API), or a node token (the agent's calls after registration).",
                },
            };
            return Task.CompletedTask;
        });
        options.AddSchemaTransformer((schema, context, _) =>
        {
            // Request bodies are read leniently: a field left out takes its default, and the control plane says which
            // fields a call needs (as a problem), so the document requires none.
            if (context.JsonTypeInfo.Type.Name is var name && (name.EndsWith("Request", StringComparison.Ordinal)
                || name.EndsWith("Body", StringComparison.Ordinal) || name.EndsWith("Patch", StringComparison.Ordinal)))
            {
                schema.Required?.Clear();
            }

            // A property left out when null (JsonIgnoreCondition.WhenWritingNull) is not required, whatever its record says.
            if (schema.Required is { Count: > 0 } required)
            {
                foreach (var property in context.JsonTypeInfo.Properties.Where(p => p.AttributeProvider?.GetCustomAttributes(typeof(JsonIgnoreAttribute), true)
                    .OfType<JsonIgnoreAttribute>().Any(a => a.Condition == JsonIgnoreCondition.WhenWritingNull) == true))
                {
                    required.Remove(property.Name);
                }
            }

            // Every problem this API writes says which refusal it is (see Problems), and carries the request's trace id.
            if (context.JsonTypeInfo.Type == typeof(Microsoft.AspNetCore.Mvc.ProblemDetails))
            {
                schema.Properties ??= new Dictionary<string, IOpenApiSchema>();
                schema.Properties["code"] = new OpenApiSchema { Type = JsonSchemaType.String, Description = "The refusal, stable across versions (e.g. `invalid_key`); `type` is `urn:ephemeral-orleans:problem:` and this." };
                schema.Properties["traceId"] = new OpenApiSchema { Type = JsonSchemaType.String, Description = "The request's trace id, for the logs." };
            }

            return Task.CompletedTask;
        });
        options.AddOperationTransformer((operation, context, _) =>
        {
            if (context.Description.ActionDescriptor.EndpointMetadata.OfType<BearerCredential>().Any())
            {
                operation.Security = [new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(Bearer, context.Document)] = [] }];
            }

            return Task.CompletedTask;
        });
    });

    public static void MapApiDocument(this IEndpointRouteBuilder app)
    {
        app.MapOpenApi(Route);
        app.MapScalarApiReference(ReferenceRoute, options => options
            .WithTitle("EphemeralOrleans API")
            .WithOpenApiRoutePattern(Route));
    }

    private sealed class BearerCredential
    {
        public static readonly BearerCredential Instance = new();
    }
}
