namespace EphemeralOrleans.Tests.Infrastructure;

/// <summary>A fact that drives Debian's Chromium: skipped with the reason when it is missing, except in CI (CI=true), where it runs and fails.</summary>
public sealed class BrowserFactAttribute : FactAttribute
{
    /// <summary>The browser: <c>CHROMIUM_PATH</c>, else Debian's <c>/usr/bin/chromium</c>.</summary>
    public static string ChromiumPath => Environment.GetEnvironmentVariable("CHROMIUM_PATH") ?? "/usr/bin/chromium";

    public BrowserFactAttribute()
    {
        if (!File.Exists(ChromiumPath) && !string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
        {
            Skip = $"No Chromium at {ChromiumPath} (apt-get install chromium, or set CHROMIUM_PATH).";
        }
    }
}
