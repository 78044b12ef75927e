namespace EphemeralOrleans.Grains.Webhooks;

/// <summary><c>Webhooks:*</c>: how deliveries are tried.</summary>
public sealed class WebhookOptions
{
    public const string Section = "Webhooks";

    /// <summary>One attempt's limit, connection and answer included.</summary>
    public TimeSpan AttemptTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The wait before the first retry; each further one doubles it (with jitter) up to <see cref="MaxRetryDelay"/>.</summary>
    public TimeSpan FirstRetryDelay { get; set; } = TimeSpan.FromSeconds(1);

    public TimeSpan MaxRetryDelay { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>An event not delivered by this age is skipped (recorded as an <c>expired</c> attempt).</summary>
    public TimeSpan MaxAge { get; set; } = TimeSpan.FromHours(24);

    /// <summary>An endpoint failing without a success for this long is paused until an admin resumes it.</summary>
    public TimeSpan PauseAfter { get; set; } = TimeSpan.FromHours(1);

    /// <summary>Period of the reminder that brings deliveries back after a silo failure (at least Orleans' minimum).</summary>
    public TimeSpan ReminderPeriod { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Endpoints per tailnet.</summary>
    public int MaxEndpoints { get; set; } = 20;
}
