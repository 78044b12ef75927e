using System.Reflection;
using System.Security.Claims;
using EphemeralOrleans.Gateway.Application;
using EphemeralOrleans.Gateway.Hosting;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Options;

namespace EphemeralOrleans.Gateway.WebConsole;

/// <summary>
/// The admin web console at <c>/admin</c>: Razor Pages behind a session cookie obtained with the admin API key, with
/// anti-forgery tokens on every change. The data-protection key ring that signs cookies and tokens lives in a grain,
/// so every gateway of a cluster accepts them and they survive restarts.
/// </summary>
public static class AdminConsole
{
    public const string Path = "/admin";
    public const string Scheme = "AdminConsole";

    /// <summary>The claim tying a session to the admin key it was opened with: a new key ends every session.</summary>
    private const string KeyClaim = "eo:admin-key";

    private static readonly Assembly Assembly = typeof(AdminConsole).Assembly;

    public static void AddAdminConsole(this IServiceCollection services, KeyRingEncryption keyRing)
    {
        services.AddRazorPages(o =>
            {
                o.RootDirectory = "/WebConsole/Pages";
                o.Conventions.AuthorizeFolder("/");
                o.Conventions.AllowAnonymousToPage("/SignIn");
            })
            // The pages are compiled into this assembly, which is not the entry assembly when tests host the gateway.
            .AddApplicationPart(Assembly);

        services.AddAuthentication(Scheme).AddCookie(Scheme, o =>
        {
            o.LoginPath = Path + "/signin";
            o.LogoutPath = Path + "/signin";
            o.Cookie.Name = "eo-console";
            o.Cookie.Path = Path;
            o.Cookie.HttpOnly = true;
            o.Cookie.SameSite = SameSiteMode.Strict;
            o.SlidingExpiration = true;
            o.Events.OnValidatePrincipal = async context =>
            {
                var services = context.HttpContext.RequestServices;
                var lifetime = services.GetRequiredService<IOptions<ConsoleOptions>>().Value.Lifetime;
                var signedIn = ConsoleSessionStore.SignedInAt(context.Properties);
                // A new admin key ends every session; so does the end of its lifetime, however much it is used.
                if (context.Principal?.FindFirstValue(KeyClaim) != services.GetRequiredService<AdminKey>().Fingerprint
                    || signedIn is null || services.GetRequiredService<TimeProvider>().GetUtcNow() >= signedIn + lifetime)
                {
                    context.RejectPrincipal();
                    await context.HttpContext.SignOutAsync(Scheme);
                }
            };
        });
        services.AddOptions<ConsoleOptions>().BindConfiguration(ConsoleOptions.Section)
            .Validate(o => o.IdleTimeout > TimeSpan.Zero && o.Lifetime > TimeSpan.Zero, "Console:IdleTimeout and Console:Lifetime must be positive.")
            .ValidateOnStart();
        services.AddSingleton<ConsoleSessionStore>();
        // Sessions on the server, and the cookies' lifetime and Secure flag from Console:*.
        services.AddOptions<CookieAuthenticationOptions>(Scheme).Configure<ConsoleSessionStore, IOptions<ConsoleOptions>>((o, store, console) =>
        {
            o.SessionStore = store;
            o.ExpireTimeSpan = console.Value.IdleTimeout;
            o.Cookie.SecurePolicy = SecurePolicy(console.Value);
        });
        services.AddOptions<CookieTempDataProviderOptions>().Configure<IOptions<ConsoleOptions>>((o, console) => o.Cookie.SecurePolicy = SecurePolicy(console.Value));
        services.AddAuthorization();
        services.AddAntiforgery(o =>
        {
            o.Cookie.Name = "eo-console-af";
            o.Cookie.Path = Path;
            o.Cookie.SameSite = SameSiteMode.Strict;
            // Not Console:SecureCookies: ASP.NET Core refuses to issue an always-Secure anti-forgery cookie on a request
            // that is not HTTPS itself, as every request behind a TLS-terminating proxy is. It carries no credential.
            o.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
        });
        services.Configure<CookieTempDataProviderOptions>(o =>
        {
            o.Cookie.Name = "eo-console-flash";
            o.Cookie.Path = Path;
            o.Cookie.SameSite = SameSiteMode.Strict;
        });

        var dataProtection = services.AddDataProtection().SetApplicationName("EphemeralOrleans");
        if (keyRing.Certificate is { } certificate)
        {
            dataProtection.ProtectKeysWithCertificate(certificate);
        }

        services.AddSingleton<IConfigureOptions<KeyManagementOptions>>(sp =>
            new ConfigureOptions<KeyManagementOptions>(o => o.XmlRepository = new GrainKeyRingRepository(sp.GetRequiredService<IGrainFactory>(), keyRing,
                sp.GetRequiredService<ILogger<GrainKeyRingRepository>>())));
        // That service loads the key ring while the host starts, before the silo or the cluster client can answer;
        // the ring is loaded on the first console request instead.
        var preload = services.FirstOrDefault(d => d.ImplementationType?.FullName == "Microsoft.AspNetCore.DataProtection.Internal.DataProtectionHostedService");
        if (preload is not null)
        {
            services.Remove(preload);
        }
    }

    private static CookieSecurePolicy SecurePolicy(ConsoleOptions console) =>
        console.SecureCookies ? CookieSecurePolicy.Always : CookieSecurePolicy.SameAsRequest;

    /// <summary>Signs the admin in: a session bound to the current admin key, its lifetime counted from now.</summary>
    public static Task SignInAsync(HttpContext context, AdminKey adminKey)
    {
        var identity = new ClaimsIdentity([new Claim(ClaimTypes.Name, "admin"), new Claim(KeyClaim, adminKey.Fingerprint)], Scheme);
        var signedIn = context.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow();
        var properties = new AuthenticationProperties { Items = { [ConsoleSessionStore.SignedInItem] = signedIn.ToString("O") } };
        return context.SignInAsync(Scheme, new ClaimsPrincipal(identity), properties);
    }

    public static void UseAdminConsole(this WebApplication app)
    {
        var limit = app.Services.GetRequiredService<IOptions<GatewayOptions>>().Value.MaxRequestBodyBytes;
        app.UseWhen(context => context.Request.Path.StartsWithSegments(Path), console =>
        {
            console.Use((context, next) =>
            {
                var headers = context.Response.Headers;
                // Scripts and styles come only from the console's own assets: no inline code can run.
                headers.ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                    + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
                headers.XContentTypeOptions = "nosniff";
                headers["Referrer-Policy"] = "no-referrer";
                headers.CacheControl = "no-store";
                if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size)
                {
                    size.MaxRequestBodySize = limit;
                }

                return next(context);
            });
        });
    }

    public static void MapAdminConsole(this WebApplication app)
    {
        app.MapGet(Path, () => Results.Redirect(Path + "/devices"));
        app.MapGet(Path + "/assets/{name}", (string name, HttpContext context) =>
        {
            var (resource, contentType) = name switch
            {
                "console.css" => ("console/console.css", "text/css; charset=utf-8"),
                "console.js" => ("console/console.js", "text/javascript; charset=utf-8"),
                _ => (null, null),
            };
            if (resource is null || Assembly.GetManifestResourceStream(resource) is not { } stream)
            {
                return Results.NotFound();
            }

            context.Response.Headers.CacheControl = "public, max-age=300";
            return Results.Stream(stream, contentType);
        }).AllowAnonymous();
        app.MapRazorPages();
    }
}
