using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using EphemeralOrleans.Contracts.Validation;

namespace EphemeralOrleans.Grains.Webhooks;

/// <summary>
/// Sends one signed delivery, as the Standard Webhooks specification has it: headers <c>webhook-id</c>,
/// <c>webhook-timestamp</c> (the attempt's Unix seconds) and <c>webhook-signature: v1,&lt;base64 HMAC-SHA256 of
/// "id.timestamp.body" under the secret's bytes&gt;</c>, secrets <c>whsec_&lt;base64&gt;</c>. Connections go only to
/// addresses <see cref="WebhookUrls.IsForbidden"/> allows, checked after name resolution (no DNS rebinding into the
/// metadata service); redirects are not followed.
/// </summary>
public sealed class WebhookSender : IDisposable
{
    private const string SecretPrefix = "whsec_";
    private readonly HttpClient _http;
    private readonly TimeProvider _time;

    public WebhookSender(TimeProvider time)
    {
        _time = time;
        _http = new HttpClient(new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            UseCookies = false,
            PooledConnectionLifetime = TimeSpan.FromMinutes(2),
            ConnectCallback = ConnectAsync,
        })
        {
            Timeout = Timeout.InfiniteTimeSpan, // each attempt has its own limit
        };
        _http.DefaultRequestHeaders.UserAgent.ParseAdd("EphemeralOrleans-Webhooks/1");
    }

    public static string NewSecret() => SecretPrefix + Convert.ToBase64String(RandomNumberGenerator.GetBytes(24));

    /// <summary><c>v1,</c> and the base64 HMAC-SHA256 of <c>id.timestamp.body</c> under the secret's bytes.</summary>
    public static string Sign(string secret, string messageId, long timestamp, ReadOnlySpan<byte> body)
    {
        using var hmac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, Convert.FromBase64String(secret[SecretPrefix.Length..]));
        hmac.AppendData(Encoding.UTF8.GetBytes($"{messageId}.{timestamp}."));
        hmac.AppendData(body);
        return "v1," + Convert.ToBase64String(hmac.GetHashAndReset());
    }

    /// <summary>Posts <paramref name="body"/>; the status code of the answer (any), or an exception for no answer.</summary>
    public async Task<HttpStatusCode> SendAsync(string url, string secret, string messageId, byte[] body, CancellationToken cancellationToken)
    {
        var timestamp = _time.GetUtcNow().ToUnixTimeSeconds();
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json") { CharSet = "utf-8" };
        using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = content };
        request.Headers.Add("webhook-id", messageId);
        request.Headers.Add("webhook-timestamp", timestamp.ToString(System.Globalization.CultureInfo.InvariantCulture));
        request.Headers.Add("webhook-signature", Sign(secret, messageId, timestamp, body));
        using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        return response.StatusCode;
    }

    public void Dispose() => _http.Dispose();

    private static async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var addresses = IPAddress.TryParse(context.DnsEndPoint.Host.Trim('[', ']'), out var literal)
            ? [literal]
            : await Dns.GetHostAddressesAsync(context.DnsEndPoint.Host, cancellationToken);
        var allowed = addresses.Where(a => !WebhookUrls.IsForbidden(a)).ToArray();
        if (allowed.Length == 0)
        {
            throw new HttpRequestException($"{context.DnsEndPoint.Host} resolves only to forbidden addresses (link-local, metadata, …).");
        }

        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(allowed, context.DnsEndPoint.Port, cancellationToken);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
