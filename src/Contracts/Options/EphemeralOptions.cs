namespace EphemeralOrleans.Contracts.Options;

/// <summary>
/// <c>Ephemeral:*</c>: when offline ephemeral nodes go, and the timings derived from it. Silos and gateways must
/// agree on these values (gateways renew their session lease at <see cref="SessionHeartbeat"/>).
/// </summary>
public sealed class EphemeralOptions
{
    public const string Section = "Ephemeral";

    /// <summary>Offline this long and an ephemeral node is removed.</summary>
    public TimeSpan InactivityTimeout { get; set; } = TimeSpan.FromMinutes(30);

    /// <summary>A released address is not handed out again before this.</summary>
    public TimeSpan IpQuarantine { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>The period of the durable removal reminder; null derives it (a quarter of the timeout, 1 to 10 minutes,
    /// never below the silo's minimum reminder period).</summary>
    public TimeSpan? ReminderPeriod { get; set; }

    /// <summary>The removal lag the contract allows beyond the timeout: max(10% of it, 2 s).</summary>
    public TimeSpan Slack => Max(InactivityTimeout / 10, TimeSpan.FromSeconds(2));

    /// <summary>A gateway's session lease not renewed for this long is taken as gone (the gateway died), and with it the
    /// sessions it held; half the slack, at most a minute.</summary>
    public TimeSpan SessionLease => Clamp(Slack / 2, TimeSpan.FromMilliseconds(500), TimeSpan.FromMinutes(1));

    /// <summary>How often a gateway renews its session lease (one call for all its streams): three times a lease.</summary>
    public TimeSpan SessionHeartbeat => SessionLease / 3;

    /// <summary>How often an active node grain checks its deadlines: a quarter of the slack, 100 ms to 15 s.</summary>
    public TimeSpan CheckInterval => Clamp(Slack / 4, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(15));

    public TimeSpan EffectiveReminderPeriod(TimeSpan minimumReminderPeriod) =>
        Max(ReminderPeriod ?? Clamp(InactivityTimeout / 4, TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(10)), minimumReminderPeriod);

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    private static TimeSpan Clamp(TimeSpan value, TimeSpan min, TimeSpan max) => value < min ? min : value > max ? max : value;
}

/// <summary><c>Addresses:*</c>: the pool IPv4 addresses come from.</summary>
public sealed class AddressOptions
{
    public const string Section = "Addresses";

    /// <summary>An IPv4 prefix inside 100.64.0.0/10 (a smaller one is useful for tests and small tailnets).</summary>
    public string Ipv4Prefix { get; set; } = "100.64.0.0/10";
}
