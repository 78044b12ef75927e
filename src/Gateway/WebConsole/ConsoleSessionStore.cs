using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Validation;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.Extensions.Options;

namespace EphemeralOrleans.Gateway.WebConsole;

/// <summary><c>Console:*</c>: how long a console session lasts, and its cookie.</summary>
public sealed class ConsoleOptions
{
    public const string Section = "Console";

    /// <summary>A session not used for this long ends (each use extends it).</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromHours(8);

    /// <summary>A session ends this long after its sign-in, however much it is used.</summary>
    public TimeSpan Lifetime { get; set; } = TimeSpan.FromHours(12);

    /// <summary>Mark the console's cookies <c>Secure</c> even on plain-HTTP requests: for a gateway behind a proxy that
    /// terminates TLS. Otherwise they are <c>Secure</c> when the request came over HTTPS.</summary>
    public bool SecureCookies { get; set; }

    /// <summary>How often a page's live stream (the device list) checks that its session still stands: a stream opened
    /// before a sign-out elsewhere ends within this.</summary>
    public TimeSpan LiveSessionCheck { get; set; } = TimeSpan.FromSeconds(30);
}

/// <summary>
/// The cookie handler's session store: the cookie carries only a random session id (inside its data-protected ticket);
/// the session is kept by <see cref="IConsoleSessionsGrain"/> under the id's hash, so every gateway of a cluster knows
/// it, a restart keeps it, and signing out ends it for every copy of the cookie.
/// </summary>
public sealed class ConsoleSessionStore(IGrainFactory grains, TimeProvider time, IOptions<ConsoleOptions> options) : ITicketStore
{
    /// <summary>The sign-in time, kept in the ticket's properties across renewals (which reset its issue time).</summary>
    public const string SignedInItem = "eo:signed-in";

    /// <summary>The claim the cookie handler puts the session's key in (ASP.NET Core's, not ours).</summary>
    private const string SessionKeyClaim = "Microsoft.AspNetCore.Authentication.Cookies-SessionId";

    /// <summary>Whether the session of a signed-in request still stands (not signed out, not expired): a long request
    /// (a live stream) is authenticated once, at its start.</summary>
    public async Task<bool> StandsAsync(System.Security.Claims.ClaimsPrincipal user) =>
        user.FindFirst(SessionKeyClaim)?.Value is { } key && await RetrieveAsync(key) is not null;

    private IConsoleSessionsGrain Sessions => grains.GetGrain<IConsoleSessionsGrain>(IConsoleSessionsGrain.Key);

    public async Task<string> StoreAsync(AuthenticationTicket ticket)
    {
        var id = Secrets.Base62(43); // 256 bits
        await RenewAsync(id, ticket);
        return id;
    }

    public Task RenewAsync(string key, AuthenticationTicket ticket) =>
        Sessions.Store(IdHash(key), TicketSerializer.Default.Serialize(ticket), ExpiresAt(ticket));

    public async Task<AuthenticationTicket?> RetrieveAsync(string key) =>
        await Sessions.Retrieve(IdHash(key)) is { } ticket ? TicketSerializer.Default.Deserialize(ticket) : null;

    public Task RemoveAsync(string key) => Sessions.Remove(IdHash(key));

    /// <summary>When the session ends at the latest: its sliding expiry, or its lifetime after sign-in if earlier.</summary>
    public DateTimeOffset ExpiresAt(AuthenticationTicket ticket)
    {
        var idle = ticket.Properties.ExpiresUtc ?? time.GetUtcNow() + options.Value.IdleTimeout;
        return SignedInAt(ticket.Properties) is { } signedIn && signedIn + options.Value.Lifetime < idle ? signedIn + options.Value.Lifetime : idle;
    }

    public static DateTimeOffset? SignedInAt(AuthenticationProperties properties) =>
        properties.Items.TryGetValue(SignedInItem, out var value) && DateTimeOffset.TryParse(value, out var at) ? at : null;

    private static string IdHash(string id) => Convert.ToHexStringLower(Secrets.Hash(id));
}
