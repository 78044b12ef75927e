using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace EphemeralOrleans.Agent.Control;

/// <summary>
/// Which certificates the agent accepts from an <c>https://</c> gateway: the system's trusted roots, or with
/// <c>--ca-file</c> only the CA certificates (PEM) in that file — a private CA or a self-signed gateway, without
/// touching the machine's trust store. Every connection to the gateway (discovery, HTTP, gRPC, the relay, the admin
/// API) is made through <see cref="CreateHandler"/>.
/// </summary>
public sealed class GatewayTrust
{
    private readonly X509Certificate2Collection? _roots;

    private GatewayTrust(string? caFile, X509Certificate2Collection? roots)
    {
        CaFile = caFile;
        _roots = roots;
    }

    /// <summary>The system's trusted roots.</summary>
    public static GatewayTrust System { get; } = new(null, null);

    /// <summary>The file the roots came from, kept in a state file so that <c>logout --state</c> trusts the same.</summary>
    public string? CaFile { get; }

    /// <summary>Only the certificates in <paramref name="caFile"/>; the system's roots when it is null.</summary>
    /// <exception cref="AgentFailure">The file cannot be read or holds no PEM certificate (code <c>invalid_ca_file</c>).</exception>
    public static GatewayTrust Load(string? caFile)
    {
        if (caFile is null)
        {
            return System;
        }

        var roots = new X509Certificate2Collection();
        try
        {
            roots.ImportFromPemFile(caFile);
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException or CryptographicException)
        {
            throw new AgentFailure("invalid_ca_file", $"--ca-file {caFile}: {exception.Message}", transient: false);
        }

        if (roots.Count == 0)
        {
            throw new AgentFailure("invalid_ca_file", $"--ca-file {caFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----).", transient: false);
        }

        return new GatewayTrust(Path.GetFullPath(caFile), roots);
    }

    /// <summary>A handler for connections to the gateway. <paramref name="drainResponses"/> false closes a connection
    /// at once when an unfinished response is disposed (HttpClient drains it for up to 2 s by default): a map stream the
    /// agent leaves must end at once, or the gateway keeps the node online that much longer.</summary>
    public SocketsHttpHandler CreateHandler(bool drainResponses = true)
    {
        var handler = new SocketsHttpHandler();
        if (!drainResponses)
        {
            handler.MaxResponseDrainSize = 0;
            handler.ResponseDrainTimeout = TimeSpan.Zero;
        }

        if (_roots is not null)
        {
            // A private CA rarely publishes revocation lists; the file is the trust decision.
            var chain = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
            chain.CustomTrustStore.AddRange(_roots);
            handler.SslOptions = new SslClientAuthenticationOptions { CertificateChainPolicy = chain };
        }

        return handler;
    }
}
