using EphemeralOrleans.Testing;

namespace EphemeralOrleans.Tests.Infrastructure;

/// <summary>A fact that drives Debian's Chromium.</summary>
public sealed class BrowserFactAttribute() : MachineFactAttribute(UnavailableReason())
{
    /// <summary>The browser: <c>CHROMIUM_PATH</c>, else Debian's <c>/usr/bin/chromium</c>.</summary>
    public static string ChromiumPath => Environment.GetEnvironmentVariable("CHROMIUM_PATH") ?? "/usr/bin/chromium";

    public static string? UnavailableReason() =>
        File.Exists(ChromiumPath) ? null : $"No Chromium at {ChromiumPath} (apt-get install chromium, or set CHROMIUM_PATH).";
}

/// <summary>A fact that drives Chromium against a gateway on PostgreSQL.</summary>
public sealed class BrowserPostgresFactAttribute() : MachineFactAttribute(BrowserFactAttribute.UnavailableReason() ?? PostgresServer.UnavailableReason());
