using System.Xml.Linq;
using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Gateway.Hosting;
using Microsoft.AspNetCore.DataProtection.Repositories;

namespace EphemeralOrleans.Gateway.WebConsole;

/// <summary>
/// Data-protection keys kept in <see cref="IKeyRingGrain"/> (grain storage: PostgreSQL in a cluster), encrypted to the
/// key ring certificate when one is configured (<see cref="KeyRingEncryption"/>). The interface is synchronous; it is
/// called when the ring is first needed and when it rolls over (rarely), never per request.
/// </summary>
internal sealed partial class GrainKeyRingRepository(IGrainFactory grains, KeyRingEncryption encryption, ILogger<GrainKeyRingRepository> logger) : IXmlRepository
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(30);

    private IKeyRingGrain Ring => grains.GetGrain<IKeyRingGrain>(IKeyRingGrain.Key);

    public IReadOnlyCollection<XElement> GetAllElements()
    {
        var elements = Ring.GetElements().WaitAsync(CallTimeout).GetAwaiter().GetResult().ToDictionary(e => e.Key, e => XElement.Parse(e.Value));
        if (encryption.Certificate is not null)
        {
            // Keys stored in the clear before encryption was configured are dropped rather than kept readable in the
            // database: the sessions they signed end (sign in again); a new key is made, encrypted.
            var unencrypted = elements.Where(e => e.Value.Descendants().Any(d => d.Name.LocalName == "masterKey")).Select(e => e.Key).ToArray();
            if (unencrypted.Length > 0)
            {
                Ring.RemoveElements(unencrypted).WaitAsync(CallTimeout).GetAwaiter().GetResult();
                LogDroppedUnencrypted(unencrypted.Length);
                foreach (var name in unencrypted)
                {
                    elements.Remove(name);
                }
            }
        }

        return elements.Values.ToArray();
    }

    public void StoreElement(XElement element, string friendlyName) =>
        Ring.StoreElement(friendlyName, element.ToString(SaveOptions.DisableFormatting)).WaitAsync(CallTimeout).GetAwaiter().GetResult();

    [LoggerMessage(Level = LogLevel.Warning, Message = "Dropped {Count} data-protection key(s) stored unencrypted before KeyRing:CertificatePath was set; console sessions they signed have ended.")]
    private partial void LogDroppedUnencrypted(int count);
}
