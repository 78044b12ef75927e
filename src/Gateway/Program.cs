using EphemeralOrleans.Gateway.Hosting;
using Microsoft.Extensions.Options;

try
{
    var app = GatewayApp.Build(args);
    await GatewayApp.RunAsync(app);
    return 0;
}
catch (Exception exception) when (exception is InvalidOperationException or OptionsValidationException)
{
    // A configuration the gateway cannot start with: one line that says which setting, no stack trace.
    Console.Error.WriteLine($"error: {exception.Message}");
    return 2;
}
