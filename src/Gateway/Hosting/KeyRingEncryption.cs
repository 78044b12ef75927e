using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace EphemeralOrleans.Gateway.Hosting;

/// <summary><c>KeyRing:*</c>: the certificate that encrypts the gateways' own secrets where the cluster stores them.</summary>
public sealed class KeyRingOptions
{
    public const string Section = "KeyRing";

    /// <summary>An RSA certificate (PEM); every gateway of a cluster is given the same one.</summary>
    public string? CertificatePath { get; set; }

    /// <summary>Its private key (PEM); unset when the certificate file holds it too.</summary>
    public string? KeyPath { get; set; }

    /// <summary>Accept a key ring stored unencrypted in PostgreSQL (anyone who reads the database can forge console
    /// sessions and impersonate the gateways to agents).</summary>
    public bool AllowUnencrypted { get; set; }
}

/// <summary>
/// Encrypts what the gateways keep of their own secrets in the cluster's storage (the key ring grain): the console's
/// data-protection keys, which sign its cookies (<c>ProtectKeysWithCertificate</c>), and the control key agents prove
/// their node keys to (RSA-OAEP under the same certificate). The certificate stays outside the database, so a copy of
/// the database alone holds no usable key. Required when the ring is persisted (PostgreSQL), unless
/// <see cref="KeyRingOptions.AllowUnencrypted"/> says otherwise; in memory it is optional.
/// </summary>
public sealed class KeyRingEncryption
{
    private const string Marker = "rsa-oaep-sha256:";

    private KeyRingEncryption(X509Certificate2? certificate) => Certificate = certificate;

    /// <summary>Null: the ring is kept as it is (in memory, or accepted unencrypted).</summary>
    public X509Certificate2? Certificate { get; }

    /// <summary>The encryption <paramref name="options"/> ask for.</summary>
    /// <exception cref="InvalidOperationException">A persisted ring without a certificate (and not accepted so), or a
    /// certificate that cannot be used; the message names the setting.</exception>
    public static KeyRingEncryption Load(KeyRingOptions options, bool persisted)
    {
        if (string.IsNullOrEmpty(options.CertificatePath))
        {
            if (persisted && !options.AllowUnencrypted)
            {
                throw new InvalidOperationException("The key ring (console sessions, the control key) would be stored in PostgreSQL unencrypted: set KeyRing:CertificatePath "
                    + "and KeyRing:KeyPath to an RSA certificate and its key in PEM, the same on every gateway (e.g. `openssl req -x509 -newkey rsa:3072 -nodes -days 3650 "
                    + "-subj /CN=eo-keyring -keyout keyring.key -out keyring.pem`), or set KeyRing:AllowUnencrypted=true to accept that.");
            }

            return new KeyRingEncryption(null);
        }

        X509Certificate2 certificate;
        try
        {
            certificate = X509Certificate2.CreateFromPemFile(options.CertificatePath, string.IsNullOrEmpty(options.KeyPath) ? null : options.KeyPath);
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException or CryptographicException)
        {
            throw new InvalidOperationException($"KeyRing:CertificatePath {options.CertificatePath} (key {options.KeyPath ?? "in the same file"}) cannot be used: {exception.Message}");
        }

        using var key = certificate.GetRSAPrivateKey();
        if (key is null)
        {
            throw new InvalidOperationException($"KeyRing:CertificatePath {options.CertificatePath} is not an RSA certificate with its private key; the key ring needs one.");
        }

        return new KeyRingEncryption(certificate);
    }

    /// <summary><paramref name="secret"/> as stored: encrypted to the certificate, or base64 without one.</summary>
    public string Protect(byte[] secret)
    {
        if (Certificate is null)
        {
            return Convert.ToBase64String(secret);
        }

        using var key = Certificate.GetRSAPublicKey()!;
        return $"{Marker}{Certificate.Thumbprint}:{Convert.ToBase64String(key.Encrypt(secret, RSAEncryptionPadding.OaepSHA256))}";
    }

    /// <summary>A secret <see cref="Protect"/> stored, back; base64 stored before encryption was configured is read too.</summary>
    /// <exception cref="InvalidOperationException">It was encrypted to another certificate, or none is configured.</exception>
    public byte[] Unprotect(string stored)
    {
        if (!IsEncrypted(stored))
        {
            return Convert.FromBase64String(stored);
        }

        var parts = stored[Marker.Length..].Split(':', 2);
        if (Certificate is null || parts.Length != 2 || !string.Equals(parts[0], Certificate.Thumbprint, StringComparison.OrdinalIgnoreCase))
        {
            throw new InvalidOperationException($"The key ring was encrypted with the certificate {parts[0]}; KeyRing:CertificatePath must name that certificate "
                + $"(it names {Certificate?.Thumbprint ?? "none"}).");
        }

        using var key = Certificate.GetRSAPrivateKey()!;
        return key.Decrypt(Convert.FromBase64String(parts[1]), RSAEncryptionPadding.OaepSHA256);
    }

    /// <summary>Whether a stored secret is encrypted (a ring from before encryption holds base64).</summary>
    public static bool IsEncrypted(string stored) => stored.StartsWith(Marker, StringComparison.Ordinal);
}
