using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace EphemeralOrleans.Testing;

/// <summary>
/// A private CA made for this test process, and what it signs, as PEM files the gateway and the agent read:
/// a TLS server certificate for loopback, and the certificate that encrypts the data-protection key ring.
/// The files live in one temporary directory, removed when the process exits.
/// </summary>
public static class TestCertificates
{
    private static readonly Lazy<Files> Made = new(Make);

    /// <summary>The CA certificate (what <c>--ca-file</c> names).</summary>
    public static string CaFile => Made.Value.Ca;

    /// <summary>A server certificate for 127.0.0.1 and localhost, signed by the CA, and its private key.</summary>
    public static (string Certificate, string Key) Server => (Made.Value.ServerCertificate, Made.Value.ServerKey);

    /// <summary>The key ring's encryption certificate and its private key (what <c>KeyRing:*</c> names).</summary>
    public static (string Certificate, string Key) KeyRing => (Made.Value.KeyRingCertificate, Made.Value.KeyRingKey);

    /// <summary>A gateway on PostgreSQL needs its key ring encrypted (or accepted unencrypted): unless the test's
    /// <paramref name="settings"/> say how, this process's key ring certificate is added, the same for every gateway.</summary>
    public static void EncryptKeyRing(IDictionary<string, string?> settings)
    {
        if (settings.TryGetValue("Storage:Provider", out var provider) && provider == "Postgres"
            && !settings.ContainsKey("KeyRing:CertificatePath") && !settings.ContainsKey("KeyRing:AllowUnencrypted"))
        {
            settings["KeyRing:CertificatePath"] = KeyRing.Certificate;
            settings["KeyRing:KeyPath"] = KeyRing.Key;
        }
    }

    private sealed record Files(string Ca, string ServerCertificate, string ServerKey, string KeyRingCertificate, string KeyRingKey);

    private static Files Make()
    {
        var directory = Directory.CreateTempSubdirectory("eo-test-certs-").FullName;
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try
            {
                Directory.Delete(directory, recursive: true);
            }
            catch (IOException)
            {
            }
        };

        var now = DateTimeOffset.UtcNow;
        using var caKey = RSA.Create(2048);
        var caRequest = new CertificateRequest("CN=EphemeralOrleans test CA", caKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        using var ca = caRequest.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(2));

        string Write(string name, string pem)
        {
            var path = Path.Combine(directory, name);
            File.WriteAllText(path, pem);
            return path;
        }

        (string, string) Issue(string name, string subject, Action<CertificateRequest> extend)
        {
            using var key = RSA.Create(2048);
            var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
            extend(request);
            using var certificate = request.Create(ca, now.AddMinutes(-5), now.AddDays(1), RandomNumberGenerator.GetBytes(12));
            return (Write(name + ".pem", certificate.ExportCertificatePem()), Write(name + ".key", key.ExportPkcs8PrivateKeyPem()));
        }

        var (server, serverKey) = Issue("server", "CN=127.0.0.1", request =>
        {
            var names = new SubjectAlternativeNameBuilder();
            names.AddIpAddress(IPAddress.Loopback);
            names.AddDnsName("localhost");
            request.CertificateExtensions.Add(names.Build());
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, true));
            request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        });
        var (keyRing, keyRingKey) = Issue("keyring", "CN=EphemeralOrleans key ring", request =>
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyEncipherment | X509KeyUsageFlags.DataEncipherment, true)));
        return new Files(Write("ca.pem", ca.ExportCertificatePem()), server, serverKey, keyRing, keyRingKey);
    }
}
