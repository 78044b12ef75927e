using EphemeralOrleans.Gateway.Hosting;

var app = GatewayApp.Build(args);
await GatewayApp.RunAsync(app);
