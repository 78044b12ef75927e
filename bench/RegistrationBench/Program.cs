using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using EphemeralOrleans.Bench;
using EphemeralOrleans.Testing;
using Npgsql;

// Ephemeral registrations per second through the HTTP API, in the embedded in-memory mode and on PostgreSQL, against a
// baseline measured in the same run on the same PostgreSQL: single-row INSERT commits per second at the same number of
// concurrent clients. Figures are ratios to that baseline because the machine is shared and noisy. Each storage is
// measured twice: registering with an auth key, and with an OIDC ID token (workload identity) from an issuer of this
// process (RS256, minted before the measurement), whose requests during the run are counted.
//
// Writes registrations.png (the medians as bars) to docs/plots.
//
//   dotnet run -c Release --project bench/RegistrationBench -- [--clients 32] [--seconds 10] [--rounds 2]
var clients = Argument("--clients", 32);
var seconds = Argument("--seconds", 10);
var rounds = Argument("--rounds", 2);
var duration = TimeSpan.FromSeconds(seconds);
var warmup = TimeSpan.FromSeconds(Argument("--warmup", 5));
// Tokens minted per token run: the same storage's rate with keys, times the run's length, with room to spare.
double tokenHeadroom = Argument("--token-headroom-percent", 300) / 100.0;
// Only the PostgreSQL measurements (for profiling them): --postgres-only 1.
var postgresOnly = Argument("--postgres-only", 0) == 1;

if (PostgresServer.UnavailableReason() is { } reason)
{
    Console.Error.WriteLine($"Cannot run: {reason}.");
    return 2;
}

Console.WriteLine($"{Environment.ProcessorCount} cores, {clients} concurrent clients, {seconds} s a measurement, {rounds} rounds");
await using var postgres = await PostgresServer.StartAsync(durable: true);
await using var issuer = await TestIssuer.StartAsync();
var results = new List<(string Name, double PerSecond)>();
var cpuPerOperation = TimeSpan.Zero; // of the last measured run
for (var round = 1; round <= rounds; round++)
{
    var baseline = await BaselineAsync(await postgres.CreateDatabaseAsync($"baseline{round}"));
    var memory = postgresOnly ? double.NaN : await RegistrationsAsync(new Dictionary<string, string?> { ["Storage:Provider"] = "Memory" }, tokens: 0);
    var memoryTokens = postgresOnly ? double.NaN : await RegistrationsAsync(new Dictionary<string, string?> { ["Storage:Provider"] = "Memory" }, TokensFor(memory));
    Dictionary<string, string?> Postgres(string name) => new()
    {
        ["Storage:Provider"] = "Postgres",
        ["ConnectionStrings:Postgres"] = postgres.CreateDatabaseAsync(name).GetAwaiter().GetResult(),
        ["Silo:AdvertisedAddress"] = "127.0.0.1",
    };
    // Keys first in odd rounds, tokens first in even ones: the second run on the server inherits the first's
    // checkpoints and autovacuum, and must not always be the same one.
    double durable, durableTokens;
    TimeSpan durableCpu, durableTokensCpu;
    if (round % 2 == 1)
    {
        durable = await RegistrationsAsync(Postgres($"gateway{round}"), tokens: 0);
        durableCpu = cpuPerOperation;
        durableTokens = await RegistrationsAsync(Postgres($"tokens{round}"), TokensFor(durable));
        durableTokensCpu = cpuPerOperation;
    }
    else
    {
        durableTokens = await RegistrationsAsync(Postgres($"tokens{round}"), TokensFor(results.Where(r => r.Name == "postgres").Max(r => r.PerSecond)));
        durableTokensCpu = cpuPerOperation;
        durable = await RegistrationsAsync(Postgres($"gateway{round}"), tokens: 0);
        durableCpu = cpuPerOperation;
    }

    Console.WriteLine($"round {round}: baseline {baseline:F0} commits/s; memory {memory:F0} reg/s with keys, {memoryTokens:F0} with tokens ({memoryTokens / memory:F2}); postgres {durable:F0} with keys, {durableTokens:F0} with tokens ({durableTokens / durable:F2})");
    Console.WriteLine($"  CPU of this process (gateway, silo and clients) per PostgreSQL registration: {durableCpu.TotalMilliseconds:F2} ms with keys, {durableTokensCpu.TotalMilliseconds:F2} ms with tokens");
    results.Add(("baseline", baseline));
    results.Add(("memory", memory));
    results.Add(("memory-tokens", memoryTokens));
    results.Add(("postgres", durable));
    results.Add(("postgres-tokens", durableTokens));
}

double Median(string name) => results.Where(r => r.Name == name).Select(r => r.PerSecond).Order().ElementAt(rounds / 2);
var medianBaseline = Median("baseline");
Console.WriteLine();
Console.WriteLine("| measurement | per second (median) | ratio to baseline |");
Console.WriteLine("|---|---:|---:|");
Console.WriteLine($"| baseline: single-row INSERT commits, {clients} clients | {medianBaseline:F0} | 1.00 |");
Console.WriteLine($"| ephemeral registrations, embedded in-memory | {Median("memory"):F0} | {Median("memory") / medianBaseline:F2} |");
Console.WriteLine($"| ephemeral registrations, PostgreSQL | {Median("postgres"):F0} | {Median("postgres") / medianBaseline:F2} |");
Console.WriteLine();
Console.WriteLine("| storage | with auth keys /s | with OIDC tokens /s | tokens against keys |");
Console.WriteLine("|---|---:|---:|---:|");
Console.WriteLine($"| embedded in-memory | {Median("memory"):F0} | {Median("memory-tokens"):F0} | {Median("memory-tokens") / Median("memory"):F2} |");
Console.WriteLine($"| PostgreSQL | {Median("postgres"):F0} | {Median("postgres-tokens"):F0} | {Median("postgres-tokens") / Median("postgres"):F2} |");
Console.WriteLine($"issuer requests over all token runs: {issuer.Requests} (discovery + JWKS, per gateway start)");
if (!postgresOnly)
{
    Console.WriteLine(Charts.Bars(Path.Combine(HostProcess.RepositoryRoot(), "docs", "plots"), "registrations",
        $"Ephemeral registrations per second ({clients} clients, median of {rounds} rounds)", "per second",
        [("PostgreSQL commits\n(baseline)", medianBaseline), ("in memory,\nauth keys", Median("memory")), ("in memory,\nOIDC tokens", Median("memory-tokens")),
            ("PostgreSQL,\nauth keys", Median("postgres")), ("PostgreSQL,\nOIDC tokens", Median("postgres-tokens"))]));
}

return 0;

async Task<double> BaselineAsync(string connectionString)
{
    await using (var connection = new NpgsqlConnection(connectionString))
    {
        await connection.OpenAsync();
        await using var create = new NpgsqlCommand("CREATE TABLE baseline (id bigserial PRIMARY KEY, payload text NOT NULL)", connection);
        await create.ExecuteNonQueryAsync();
    }

    return await RunAsync(async (stop, count) =>
    {
        // The same concurrency as the registration load, each client on its own connection, autocommit.
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var insert = new NpgsqlCommand("INSERT INTO baseline (payload) VALUES (@p)", connection);
        var payload = insert.Parameters.AddWithValue("p", "");
        while (!stop.IsCancellationRequested)
        {
            payload.Value = Guid.NewGuid().ToString();
            await insert.ExecuteNonQueryAsync();
            count();
        }
    });
}

int TokensFor(double keyRate) => (int)(keyRate * (warmup + duration).TotalSeconds * tokenHeadroom) + 1000;

// With tokens > 0, registers with that many OIDC tokens (minted first) instead of an auth key.
async Task<double> RegistrationsAsync(Dictionary<string, string?> settings, int tokens)
{
    var withTokens = tokens > 0;
    settings["Admin:ApiKey"] = "bench-admin-key-4Fq8Zr2Lw6Xt9Mv3";
    settings["RateLimits:Enabled"] = "false"; // 32 clients of one address, far above any one source's limit
    // Minted before the gateway starts, on every core: signing is the issuer's work, not the gateway's.
    var pool = new System.Collections.Concurrent.ConcurrentQueue<string>();
    if (withTokens)
    {
        var kid = issuer.RsaKid;
        Parallel.For(0, tokens, issuer.CloneSigningKey, (_, _, signingKey) =>
        {
            pool.Enqueue(issuer.Mint("repo:acme/api:ref:refs/heads/main", "bench", signWith: signingKey, kid: kid));
            return signingKey;
        }, signingKey => signingKey.Dispose());
    }

    var (app, httpUrl) = await InProcessGateway.StartAsync(settings);
    try
    {
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = clients }) { BaseAddress = httpUrl };
        using var createKey = new HttpRequestMessage(HttpMethod.Post, "/api/v1/tailnets/bench/keys")
        {
            Content = JsonContent.Create(new { reusable = true, ephemeral = true, preauthorized = true }),
        };
        createKey.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "bench-admin-key-4Fq8Zr2Lw6Xt9Mv3");
        var key = (await (await http.SendAsync(createKey)).EnsureSuccessStatusCode().Content.ReadFromJsonAsync<JsonElement>()).GetProperty("key").GetString();
        using var createPolicy = new HttpRequestMessage(HttpMethod.Post, "/api/v1/tailnets/bench/trust-policies")
        {
            Content = JsonContent.Create(new { issuer = issuer.Issuer, audiences = new[] { "bench" }, subject = "repo:acme/*" }),
        };
        createPolicy.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "bench-admin-key-4Fq8Zr2Lw6Xt9Mv3");
        (await http.SendAsync(createPolicy)).EnsureSuccessStatusCode();

        Task Register() => withTokens
            ? pool.TryDequeue(out var token) ? RegisterWithTokenAsync(http, token) : throw new InvalidOperationException($"the {tokens} tokens ran out: raise --token-headroom-percent")
            : RegisterAsync(http, key!);

        // Warm up first: tiered JIT and the grains on the path need a few seconds of load to settle.
        await RunAsync(async (stop, count) =>
        {
            while (!stop.IsCancellationRequested)
            {
                await Register();
            }
        }, warmup);

        return await RunAsync(async (stop, count) =>
        {
            while (!stop.IsCancellationRequested)
            {
                await Register();
                count();
            }
        });
    }
    finally
    {
        await app.StopAsync();
        await app.DisposeAsync();
        // Each round has its own database: let go of the previous one's pooled connections.
        NpgsqlConnection.ClearAllPools();
    }
}

static async Task RegisterAsync(HttpClient http, string key)
{
    var nodeKey = "nodekey:" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
    using var response = await http.PostAsJsonAsync("/api/v1/machine/register", new { authKey = key, nodeKey, hostname = "ci-runner", ephemeral = true });
    response.EnsureSuccessStatusCode();
}

static async Task RegisterWithTokenAsync(HttpClient http, string idToken)
{
    var nodeKey = "nodekey:" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
    using var response = await http.PostAsJsonAsync("/api/v1/machine/register", new { idToken, nodeKey, hostname = "ci-runner", tailnet = "bench" });
    response.EnsureSuccessStatusCode();
}

async Task<double> RunAsync(Func<CancellationToken, Action, Task> client, TimeSpan? length = null)
{
    long done = 0;
    using var stop = new CancellationTokenSource(length ?? duration);
    var clock = Stopwatch.StartNew();
    var cpu = Process.GetCurrentProcess().TotalProcessorTime;
    await Task.WhenAll(Enumerable.Range(0, clients).Select(_ => Task.Run(() => client(stop.Token, () => Interlocked.Increment(ref done)))));
    cpuPerOperation = done > 0 ? (Process.GetCurrentProcess().TotalProcessorTime - cpu) / done : TimeSpan.Zero;
    return done / clock.Elapsed.TotalSeconds;
}

int Argument(string name, int fallback)
{
    var index = Array.IndexOf(args, name);
    return index >= 0 && index + 1 < args.Length && int.TryParse(args[index + 1], out var value) ? value : fallback;
}
