using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using EphemeralOrleans.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Npgsql;

// What the audit log and webhooks cost registrations: ephemeral registrations per second with the log off
// (Events:Enabled=false, the baseline), with the log on, and with the log on and two webhook endpoints attached, in the
// same run, on PostgreSQL and in the embedded mode. With webhooks: the delivery lag from an event's time to its arrival
// at the receiver (p50/p99/max), and how long after the load the receivers had every event. Modes rotate per round.
//
//   dotnet run -c Release --project bench/AuditBench -- [--clients 32] [--seconds 10] [--rounds 3]
var clients = Argument("--clients", 32);
var duration = TimeSpan.FromSeconds(Argument("--seconds", 10));
var warmup = TimeSpan.FromSeconds(Argument("--warmup", 5));
var rounds = Argument("--rounds", 3);
const string AdminKey = "bench-admin-key-4Fq8Zr2Lw6Xt9Mv3";

if (PostgresServer.UnavailableReason() is { } reason)
{
    Console.Error.WriteLine($"Cannot run: {reason}.");
    return 2;
}

Console.WriteLine($"{Environment.ProcessorCount} cores, {clients} concurrent clients, {duration.TotalSeconds} s a measurement, {rounds} rounds");
await using var postgres = await PostgresServer.StartAsync(durable: true);
var results = new List<(string Storage, string Mode, double PerSecond)>();
var lags = new List<(string Storage, double P50, double P99, double Max, double Drain)>();
string[] modes = ["off", "log", "webhooks"];
// One unrecorded run first: the first gateway of the process pays for JIT and a cold PostgreSQL.
await MeasureAsync(new Dictionary<string, string?>
{
    ["Admin:ApiKey"] = AdminKey, ["Storage:Provider"] = "Postgres", ["Silo:AdvertisedAddress"] = "127.0.0.1", ["RateLimits:Enabled"] = "false",
    ["ConnectionStrings:Postgres"] = await postgres.CreateDatabaseAsync("prime"),
}, webhooks: true);
for (var round = 1; round <= rounds; round++)
{
    foreach (var storage in new[] { "postgres", "memory" })
    {
        // Rotated, so that no mode always runs first (cold) or last (after the others' load on the server).
        foreach (var mode in modes.Skip((round - 1) % 3).Concat(modes.Take((round - 1) % 3)))
        {
            var settings = new Dictionary<string, string?>
            {
                ["Admin:ApiKey"] = AdminKey, ["Events:Enabled"] = mode == "off" ? "false" : "true", ["RateLimits:Enabled"] = "false",
            };
            if (storage == "postgres")
            {
                settings["Storage:Provider"] = "Postgres";
                settings["ConnectionStrings:Postgres"] = await postgres.CreateDatabaseAsync($"{mode}{round}");
                settings["Silo:AdvertisedAddress"] = "127.0.0.1";
            }

            var (perSecond, lag) = await MeasureAsync(settings, webhooks: mode == "webhooks");
            results.Add((storage, mode, perSecond));
            if (lag is { } l)
            {
                lags.Add((storage, l.P50, l.P99, l.Max, l.Drain));
            }

            Console.WriteLine($"round {round}, {storage}, {mode}: {perSecond:F0} registrations/s"
                + (lag is { } d ? $"; delivery lag p50 {d.P50:F0} ms, p99 {d.P99:F0} ms, max {d.Max:F0} ms; all delivered {d.Drain:F1} s after the load" : ""));
        }
    }
}

double Median(IEnumerable<double> values)
{
    var sorted = values.Order().ToArray();
    return sorted[sorted.Length / 2];
}

Console.WriteLine();
Console.WriteLine("| storage | log off (baseline) /s | log on /s | log + 2 webhooks /s | log / off | webhooks / off |");
Console.WriteLine("|---|---:|---:|---:|---:|---:|");
foreach (var storage in new[] { "postgres", "memory" })
{
    double Rate(string mode) => Median(results.Where(r => r.Storage == storage && r.Mode == mode).Select(r => r.PerSecond));
    // Ratios of each round's own figures, then their median: rounds drift on a shared machine.
    double Ratio(string mode) => Median(Enumerable.Range(0, rounds).Select(i =>
        results.Where(r => r.Storage == storage && r.Mode == mode).ElementAt(i).PerSecond / results.Where(r => r.Storage == storage && r.Mode == "off").ElementAt(i).PerSecond));
    Console.WriteLine($"| {storage} | {Rate("off"):F0} | {Rate("log"):F0} | {Rate("webhooks"):F0} | {Ratio("log"):F2} | {Ratio("webhooks"):F2} |");
}

Console.WriteLine();
Console.WriteLine("| storage | delivery lag p50 ms | p99 ms | max ms | all delivered after the load, s |");
Console.WriteLine("|---|---:|---:|---:|---:|");
foreach (var storage in new[] { "postgres", "memory" })
{
    var of = lags.Where(l => l.Storage == storage).ToArray();
    Console.WriteLine($"| {storage} | {Median(of.Select(l => l.P50)):F0} | {Median(of.Select(l => l.P99)):F0} | {Median(of.Select(l => l.Max)):F0} | {Median(of.Select(l => l.Drain)):F1} |");
}

return 0;

async Task<(double PerSecond, (double P50, double P99, double Max, double Drain)? Lag)> MeasureAsync(Dictionary<string, string?> settings, bool webhooks)
{
    var (app, httpUrl) = await InProcessGateway.StartAsync(settings);
    var receivers = new List<Receiver>();
    try
    {
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = clients }) { BaseAddress = httpUrl };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
        if (webhooks)
        {
            for (var i = 0; i < 2; i++)
            {
                var receiver = await Receiver.StartAsync();
                receivers.Add(receiver);
                (await http.PostAsJsonAsync("/api/v1/tailnets/bench/webhooks", new { url = receiver.Url })).EnsureSuccessStatusCode();
            }
        }

        var key = (await (await http.PostAsJsonAsync("/api/v1/tailnets/bench/keys", new { reusable = true, ephemeral = true, preauthorized = true }))
            .EnsureSuccessStatusCode().Content.ReadFromJsonAsync<JsonElement>()).GetProperty("key").GetString()!;
        using var agents = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = clients }) { BaseAddress = httpUrl };
        await RunAsync(agents, key, warmup);
        foreach (var receiver in receivers)
        {
            receiver.StartMeasuring();
        }

        var perSecond = await RunAsync(agents, key, duration);
        if (!webhooks)
        {
            return (perSecond, null);
        }

        // Every event of the log, at both receivers.
        var ended = Stopwatch.StartNew();
        var lastId = await LastEventIdAsync(http);
        while (receivers.Any(r => r.HighestEventId < lastId))
        {
            if (ended.Elapsed > TimeSpan.FromMinutes(2))
            {
                throw new TimeoutException($"webhooks not delivered 2 minutes after the load: {string.Join(", ", receivers.Select(r => r.HighestEventId))} of {lastId}");
            }

            await Task.Delay(50);
        }

        var drain = ended.Elapsed.TotalSeconds;
        var all = receivers.SelectMany(r => r.Lags).Order().ToArray();
        return (perSecond, (all[all.Length / 2], all[(int)(all.Length * 0.99)], all[^1], drain));
    }
    finally
    {
        await app.StopAsync();
        await app.DisposeAsync();
        foreach (var receiver in receivers)
        {
            await receiver.DisposeAsync();
        }

        NpgsqlConnection.ClearAllPools();
    }
}

static async Task<long> LastEventIdAsync(HttpClient http)
{
    long last = 0;
    while (true)
    {
        var page = await http.GetFromJsonAsync<JsonElement>($"/api/v1/tailnets/bench/events?since={last}&limit=1000");
        var next = long.Parse(page.GetProperty("next").GetString()!);
        if (next == last)
        {
            return last;
        }

        last = next;
    }
}

async Task<double> RunAsync(HttpClient http, string key, TimeSpan length)
{
    long done = 0;
    using var stop = new CancellationTokenSource(length);
    var clock = Stopwatch.StartNew();
    await Task.WhenAll(Enumerable.Range(0, clients).Select(_ => Task.Run(async () =>
    {
        while (!stop.IsCancellationRequested)
        {
            var nodeKey = "nodekey:" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
            using var response = await http.PostAsJsonAsync("/api/v1/machine/register", new { authKey = key, nodeKey, hostname = "ci-runner", ephemeral = true });
            response.EnsureSuccessStatusCode();
            Interlocked.Increment(ref done);
        }
    })));
    return done / clock.Elapsed.TotalSeconds;
}

int Argument(string name, int fallback)
{
    var index = Array.IndexOf(args, name);
    return index >= 0 && index + 1 < args.Length && int.TryParse(args[index + 1], out var value) ? value : fallback;
}

/// <summary>A webhook receiver on loopback: answers 204 and notes each event's lag (arrival − event time).</summary>
sealed class Receiver : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentBag<double> _lags = [];
    private long _highest;
    private volatile bool _measuring;

    private Receiver(WebApplication app, string url)
    {
        _app = app;
        Url = url;
    }

    public string Url { get; }

    public long HighestEventId => Interlocked.Read(ref _highest);

    public double[] Lags => [.. _lags];

    public void StartMeasuring() => _measuring = true;

    public static async Task<Receiver> StartAsync()
    {
        var port = FreePort.Next();
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var receiver = new Receiver(app, $"http://127.0.0.1:{port}/hook");
        app.MapPost("/hook", async (HttpRequest request) =>
        {
            var body = await JsonSerializer.DeserializeAsync<JsonElement>(request.Body);
            var data = body.GetProperty("data");
            var id = data.GetProperty("id").GetInt64();
            if (receiver._measuring)
            {
                receiver._lags.Add((DateTimeOffset.UtcNow - data.GetProperty("time").GetDateTimeOffset()).TotalMilliseconds);
            }

            long seen;
            while ((seen = Interlocked.Read(ref receiver._highest)) < id && Interlocked.CompareExchange(ref receiver._highest, id, seen) != seen)
            {
            }

            return Results.NoContent();
        });
        await app.StartAsync();
        return receiver;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
