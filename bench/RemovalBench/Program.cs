using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using EphemeralOrleans.Bench;
using EphemeralOrleans.Testing;

// How late ephemeral nodes are removed after their inactivity deadline: N nodes register and never connect, so each
// one's deadline is its registration time plus Ephemeral:InactivityTimeout; the lag is what each node.removed event
// says it was inactive (its inactiveSeconds) minus the timeout. In memory and on PostgreSQL, one gateway process each
// (embedded silo), same run. The deadline's own timer removes a node whose grain is active; the reminder
// (Ephemeral:ReminderPeriod) is the backstop after a grain was collected or its silo died. Writes removal-lag.png.
//
//   dotnet run -c Release --project bench/RemovalBench -- [--nodes 1000] [--timeout 10] [--clients 16]
var nodes = Argument("--nodes", 1000);
var timeout = TimeSpan.FromSeconds(Argument("--timeout", 10));
var clients = Argument("--clients", 16);
const string AdminKey = "bench-admin-key-4Fq8Zr2Lw6Xt9Mv3";

if (PostgresServer.UnavailableReason() is { } reason)
{
    Console.Error.WriteLine($"Cannot run: {reason}.");
    return 2;
}

Console.WriteLine($"{Environment.ProcessorCount} cores; {nodes} ephemeral nodes that never connect, inactivity timeout {timeout.TotalSeconds} s, {clients} registering clients");
await using var postgres = await PostgresServer.StartAsync(durable: true);
var lags = new List<(string Storage, IReadOnlyList<double> Lags)>();
Console.WriteLine("| storage | removed | lag p50 ms | p90 ms | p99 ms | max ms | p99 / timeout |");
Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|");
foreach (var storage in new[] { "memory", "postgres" })
{
    var settings = new Dictionary<string, string>
    {
        ["Admin:ApiKey"] = AdminKey,
        ["Ephemeral:InactivityTimeout"] = timeout.ToString("c"),
        ["Logging:LogLevel:Default"] = "Warning",
    };
    if (storage == "postgres")
    {
        settings["Storage:Provider"] = "Postgres";
        settings["ConnectionStrings:Postgres"] = await postgres.CreateDatabaseAsync("removal");
        settings["Silo:AdvertisedAddress"] = "127.0.0.1";
    }

    await using var gateway = await HostProcess.StartGatewayAsync(settings);
    using var admin = new HttpClient { BaseAddress = gateway.HttpUrl, Timeout = TimeSpan.FromSeconds(60) };
    admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
    var key = await admin.CreateKeyAsync(ephemeral: true);
    var registered = 0;
    await Task.WhenAll(Enumerable.Range(0, clients).Select(async _ =>
    {
        using var http = new HttpClient { BaseAddress = gateway.HttpUrl, Timeout = TimeSpan.FromSeconds(60) };
        while (Interlocked.Increment(ref registered) <= nodes)
        {
            await http.RegisterAsync(key, "idle");
        }
    }));

    // Every node gone, then every removal's event.
    var clock = Stopwatch.StartNew();
    while ((await admin.GetFromJsonAsync<JsonElement>("/api/v1/tailnets/-/nodes")).GetProperty("nodes").GetArrayLength() > 0)
    {
        if (clock.Elapsed > timeout + TimeSpan.FromMinutes(5))
        {
            throw new TimeoutException("nodes were not removed within the timeout and five minutes");
        }

        await Task.Delay(500);
    }

    var lag = new List<double>();
    var since = "";
    while (lag.Count < nodes)
    {
        var page = await admin.GetFromJsonAsync<JsonElement>($"/api/v1/tailnets/-/events?type=node.removed&limit=1000{(since.Length > 0 ? "&since=" + since : "")}");
        var events = page.GetProperty("events").EnumerateArray().ToArray();
        if (events.Length == 0)
        {
            await Task.Delay(500); // the log group-commits: the last removals' events may follow the removals by a moment
            continue;
        }

        lag.AddRange(events.Select(e => (e.GetProperty("data").GetProperty("inactiveSeconds").GetDouble() - timeout.TotalSeconds) * 1000));
        since = page.GetProperty("next").GetString()!;
    }

    lag.Sort();
    double P(double p) => LabMeasure.Percentile(lag, p);
    Console.WriteLine($"| {(storage == "memory" ? "embedded in-memory" : "PostgreSQL")} | {lag.Count} | {P(0.5):F0} | {P(0.9):F0} | {P(0.99):F0} | {lag[^1]:F0} | {P(0.99) / timeout.TotalMilliseconds:F3} |");
    lags.Add((storage == "memory" ? "in memory" : "PostgreSQL", lag));
}

Console.WriteLine(Charts.Distribution(Path.Combine(HostProcess.RepositoryRoot(), "docs", "plots"), "removal-lag",
    $"Removal after the inactivity deadline ({nodes} idle ephemeral nodes, timeout {timeout.TotalSeconds} s)", "lag after the deadline (ms)", lags));
return 0;

int Argument(string name, int fallback)
{
    var index = Array.IndexOf(args, name);
    return index >= 0 && index + 1 < args.Length ? int.Parse(args[index + 1]) : fallback;
}
