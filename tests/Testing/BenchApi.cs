using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;

namespace EphemeralOrleans.Testing;

/// <summary>The few admin and agent API calls the benches make, over an <see cref="HttpClient"/> that carries the
/// admin key.</summary>
public static class BenchApi
{
    /// <summary>A reusable, pre-authorized key of <paramref name="tailnet"/>; returns the full key.</summary>
    public static async Task<string> CreateKeyAsync(this HttpClient admin, bool ephemeral, string tailnet = "-")
    {
        using var response = await admin.PostAsJsonAsync($"/api/v1/tailnets/{tailnet}/keys", new { reusable = true, ephemeral, preauthorized = true });
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("key").GetString()!;
    }

    /// <summary>Registers a node with a fresh node key; returns its id and token.</summary>
    public static async Task<(string Id, string Token)> RegisterAsync(this HttpClient http, string authKey, string hostname)
    {
        var nodeKey = "nodekey:" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        using var response = await http.PostAsJsonAsync("/api/v1/machine/register", new { authKey, nodeKey, hostname });
        response.EnsureSuccessStatusCode();
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        return (body.GetProperty("node").GetProperty("id").GetString()!, body.GetProperty("nodeToken").GetString()!);
    }
}
