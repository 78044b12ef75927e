using System.Text.Json;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Gateway.Application;
using EphemeralOrleans.Gateway.Hosting;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;

namespace EphemeralOrleans.Gateway.Http;

/// <summary>Reads JSON bodies with a size limit and turns malformed ones into 400 problems.</summary>
public static class RequestBodies
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { Converters = { new StringListConverter() } };

    public static async Task<T> ReadAsync<T>(HttpContext context)
        where T : class
    {
        LimitBody(context);
        try
        {
            return await JsonSerializer.DeserializeAsync<T>(context.Request.Body, Json, context.RequestAborted)
                ?? throw new ControlPlaneException(Failure.Invalid("invalid_json", "The body must be a JSON object."));
        }
        catch (JsonException exception)
        {
            throw new ControlPlaneException(Failure.Invalid("invalid_json", $"The body is not valid JSON for this call: {exception.Message}"));
        }
    }

    /// <summary>The body as text, under the same size limit.</summary>
    public static async Task<string> ReadTextAsync(HttpContext context)
    {
        LimitBody(context);
        using var reader = new StreamReader(context.Request.Body);
        return await reader.ReadToEndAsync(context.RequestAborted);
    }

    /// <summary>The bearer credential of a request, if any.</summary>
    public static string? Bearer(HttpContext context) => Credentials.Bearer(context.Request.Headers.Authorization.ToString());

    /// <summary>Applies <c>Gateway:MaxRequestBodyBytes</c>: refuses a declared length over it, and caps what is read.</summary>
    private static void LimitBody(HttpContext context)
    {
        var limit = context.RequestServices.GetRequiredService<IOptions<GatewayOptions>>().Value.MaxRequestBodyBytes;
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } sizeFeature)
        {
            sizeFeature.MaxRequestBodySize = limit;
        }

        if (context.Request.ContentLength > limit)
        {
            throw new BadHttpRequestException("Request body too large.", StatusCodes.Status413PayloadTooLarge);
        }
    }

    /// <summary>A list of strings (tags, audiences, event types, endpoints) without nulls: <c>["tag:ci", null]</c> is
    /// malformed here, so no validator downstream meets a null element.</summary>
    private sealed class StringListConverter : System.Text.Json.Serialization.JsonConverter<string[]>
    {
        public override string[]? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        {
            if (reader.TokenType == JsonTokenType.Null)
            {
                return null;
            }

            if (reader.TokenType != JsonTokenType.StartArray)
            {
                throw new JsonException("Expected a list of strings.");
            }

            var items = new List<string>();
            while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            {
                items.Add(reader.TokenType == JsonTokenType.String ? reader.GetString()! : throw new JsonException("A list of strings holds only strings (no null, number or object)."));
            }

            return [.. items];
        }

        public override void Write(Utf8JsonWriter writer, string[] value, JsonSerializerOptions options) => JsonSerializer.Serialize(writer, value);
    }
}
