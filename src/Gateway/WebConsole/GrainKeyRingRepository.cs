using System.Xml.Linq;
using EphemeralOrleans.Contracts.Grains;
using Microsoft.AspNetCore.DataProtection.Repositories;

namespace EphemeralOrleans.Gateway.WebConsole;

/// <summary>
/// Data-protection keys kept in <see cref="IKeyRingGrain"/> (grain storage: PostgreSQL in a cluster). The interface
/// is synchronous; it is called when the ring is first needed and when it rolls over (rarely), never per request.
/// </summary>
internal sealed class GrainKeyRingRepository(IGrainFactory grains) : IXmlRepository
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(30);

    private IKeyRingGrain Ring => grains.GetGrain<IKeyRingGrain>(IKeyRingGrain.Key);

    public IReadOnlyCollection<XElement> GetAllElements() =>
        Ring.GetElements().WaitAsync(CallTimeout).GetAwaiter().GetResult().Select(XElement.Parse).ToArray();

    public void StoreElement(XElement element, string friendlyName) =>
        Ring.StoreElement(friendlyName, element.ToString(SaveOptions.DisableFormatting)).WaitAsync(CallTimeout).GetAwaiter().GetResult();
}
