using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using EphemeralOrleans.Bench;
using EphemeralOrleans.Testing;

// What a registration flood from one source does to another source's registrations, with the production rate limits
// (RateLimits:* defaults: 100 registrations a second per source, burst 500): a victim registers at a steady pace from
// 127.0.0.41 alone (the baseline), then while 127.0.0.42 tries ten times its limit; both against one gateway process,
// same run. Reported: the victim's p50/p99 alone and under the flood and their ratio, and what the flood got (accepted,
// 429, 5xx). Each source uses its own key, so the per-key limit (500 a second) is not what is measured. A last round
// runs the same flood against a gateway without limits (RateLimits:Enabled=false): what the limits spare the victim.
//
// Writes flood-latency.png (the victim's latency distributions) to --plots (docs/plots).
//
//   dotnet run -c Release --project bench/FloodBench -- [--seconds 20] [--rounds 3] [--victim-rate 50] [--flood-factor 10] [--plots DIR]
var duration = TimeSpan.FromSeconds(Argument("--seconds", 20));
var rounds = Argument("--rounds", 3);
var victimRate = Argument("--victim-rate", 50);
var floodFactor = Argument("--flood-factor", 10);
var plots = args.SkipWhile(a => a != "--plots").Skip(1).FirstOrDefault() ?? Path.Combine(HostProcess.RepositoryRoot(), "docs", "plots");
const int SourceLimit = 100; // RateLimits:RegistrationsPerSecond's default, set explicitly below
const string AdminKey = "bench-admin-key-4Fq8Zr2Lw6Xt9Mv3";

Console.WriteLine($"{Environment.ProcessorCount} cores; victim {victimRate}/s from 127.0.0.41; flood {floodFactor}× the per-source limit ({floodFactor * SourceLimit}/s) from 127.0.0.42; "
    + $"{duration.TotalSeconds} s a measurement, {rounds} rounds");
Console.WriteLine("| round | victim p50/p99 alone (ms) | victim p50/p99 under the flood (ms) | p99 ratio | flood: accepted / 429 / 5xx / other | flood sent/s |");
Console.WriteLine("|---|---|---|---|---|---|");
var results = new List<(double Ratio, List<double> Alone, List<double> Flooded)>();
await using (var limited = await StartAsync(limits: true))
{
    await limited.VictimAsync(TimeSpan.FromSeconds(3)); // warm-up: JIT, first grains
    for (var round = 1; round <= rounds; round++)
    {
        results.Add(await limited.RoundAsync(round.ToString()));
    }
}

var median = results.OrderBy(r => r.Ratio).ElementAt(results.Count / 2);
List<double> unlimitedFlooded;
await using (var unlimited = await StartAsync(limits: false))
{
    await unlimited.VictimAsync(TimeSpan.FromSeconds(3));
    unlimitedFlooded = (await unlimited.RoundAsync("no limits")).Flooded;
}

Console.WriteLine($"median p99 ratio with the limits (flooded / alone): {median.Ratio:F2}  (goal ≤ 2)");
Console.WriteLine(Charts.Distribution(plots, "flood-latency", $"Victim registrations: alone, under a {floodFactor}x flood, and the flood without limits", "latency (ms)",
    [("alone (median round)", median.Alone), ("under the flood, limits on", median.Flooded), ("under the flood, no limits", unlimitedFlooded)]));
return 0;

async Task<Target> StartAsync(bool limits)
{
    var gateway = await HostProcess.StartGatewayAsync(new Dictionary<string, string>
    {
        ["Admin:ApiKey"] = AdminKey,
        ["RateLimits:Enabled"] = limits ? "true" : "false",
        ["RateLimits:RegistrationsPerSecond"] = SourceLimit.ToString(),
        ["RateLimits:RegistrationBurst"] = "500",
        ["Logging:LogLevel:Default"] = "Warning",
    });
    using var admin = new HttpClient { BaseAddress = gateway.HttpUrl };
    admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
    return new Target(gateway, await admin.CreateKeyAsync(ephemeral: true), await admin.CreateKeyAsync(ephemeral: true), victimRate, floodFactor * SourceLimit, duration);
}

int Argument(string name, int fallback)
{
    var index = Array.IndexOf(args, name);
    return index >= 0 && index + 1 < args.Length ? int.Parse(args[index + 1]) : fallback;
}

/// <summary>One gateway process, the victim's and the flood's clients and keys.</summary>
sealed class Target(HostProcess gateway, string victimKey, string floodKey, int victimRate, int floodRate, TimeSpan duration) : IAsyncDisposable
{
    private readonly HttpClient _victim = new(LoopbackSource.Handler("127.0.0.41")) { BaseAddress = gateway.HttpUrl };
    private readonly HttpClient _flooder = new(LoopbackSource.Handler("127.0.0.42")) { BaseAddress = gateway.HttpUrl, Timeout = TimeSpan.FromSeconds(30) };

    /// <summary>The victim alone, then under the flood; prints the row and returns the p99 ratio and the latencies.</summary>
    public async Task<(double Ratio, List<double> Alone, List<double> Flooded)> RoundAsync(string label)
    {
        var alone = await VictimAsync(duration);
        var outcomes = new ConcurrentDictionary<string, int>();
        using var stop = new CancellationTokenSource();
        var clock = Stopwatch.StartNew();
        var flood = FloodAsync(outcomes, stop.Token);
        await Task.Delay(1000); // with limits, the flood's burst allowance is spent first
        var flooded = await VictimAsync(duration);
        await stop.CancelAsync();
        await flood;
        var sent = outcomes.Values.Sum() / clock.Elapsed.TotalSeconds;
        alone.Sort();
        flooded.Sort();
        double Percentile(List<double> sorted, double p) => LabMeasure.Percentile(sorted, p);
        var ratio = Percentile(flooded, 0.99) / Percentile(alone, 0.99);
        Console.WriteLine($"| {label} | {Percentile(alone, 0.5):F1} / {Percentile(alone, 0.99):F1} | {Percentile(flooded, 0.5):F1} / {Percentile(flooded, 0.99):F1} | {ratio:F2} | "
            + $"{outcomes.GetValueOrDefault("200")} / {outcomes.GetValueOrDefault("429")} / {outcomes.Where(o => o.Key.StartsWith('5')).Sum(o => o.Value)} / "
            + $"{outcomes.Where(o => o.Key is not ("200" or "429") && !o.Key.StartsWith('5')).Sum(o => o.Value)} | {sent:F0} |");
        return (ratio, alone, flooded);
    }

    public async ValueTask DisposeAsync()
    {
        _victim.Dispose();
        _flooder.Dispose();
        await gateway.DisposeAsync();
    }

    // The victim's registrations, one at a time at its pace; each must be accepted. Latencies in ms.
    public async Task<List<double>> VictimAsync(TimeSpan within)
    {
        var latencies = new List<double>();
        var pace = Stopwatch.StartNew();
        while (pace.Elapsed < within)
        {
            var started = Stopwatch.GetTimestamp();
            using var response = await RegisterAsync(_victim, victimKey);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                throw new InvalidOperationException($"the victim's registration was refused: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
            }

            latencies.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            var due = TimeSpan.FromSeconds(latencies.Count / (double)victimRate) - pace.Elapsed;
            if (due > TimeSpan.Zero)
            {
                await Task.Delay(due);
            }
        }

        return latencies;
    }

    // floodFactor × the limit from 64 connections, each at its share of the pace, until stopped.
    private Task FloodAsync(ConcurrentDictionary<string, int> outcomes, CancellationToken stopping) => Task.WhenAll(Enumerable.Range(0, 64).Select(async _ =>
    {
        var perConnection = floodRate / 64.0;
        var pace = Stopwatch.StartNew();
        var sent = 0;
        while (!stopping.IsCancellationRequested)
        {
            string outcome;
            try
            {
                using var response = await RegisterAsync(_flooder, floodKey);
                outcome = ((int)response.StatusCode).ToString();
            }
            catch (HttpRequestException exception)
            {
                outcome = "error: " + exception.HttpRequestError;
            }

            outcomes.AddOrUpdate(outcome, 1, (_, n) => n + 1);
            sent++;
            var due = TimeSpan.FromSeconds(sent / perConnection) - pace.Elapsed;
            if (due > TimeSpan.Zero)
            {
                await Task.Delay(due, CancellationToken.None);
            }
        }
    }));

    private static Task<HttpResponseMessage> RegisterAsync(HttpClient client, string authKey) =>
        client.PostAsJsonAsync("/api/v1/machine/register", new
        {
            authKey, nodeKey = "nodekey:" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32)), hostname = "flood", ephemeral = true,
        });
}
