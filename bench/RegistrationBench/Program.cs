using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using EphemeralOrleans.Testing;
using Npgsql;

// Ephemeral registrations per second through the HTTP API, in the embedded in-memory mode and on PostgreSQL, against a
// baseline measured in the same run on the same PostgreSQL: single-row INSERT commits per second at the same number of
// concurrent clients. Figures are ratios to that baseline because the machine is shared and noisy.
//
//   dotnet run -c Release --project bench/RegistrationBench -- [--clients 32] [--seconds 10] [--rounds 2]
var clients = Argument("--clients", 32);
var seconds = Argument("--seconds", 10);
var rounds = Argument("--rounds", 2);
var duration = TimeSpan.FromSeconds(seconds);
var warmup = TimeSpan.FromSeconds(Argument("--warmup", 5));

if (PostgresServer.UnavailableReason() is { } reason)
{
    Console.Error.WriteLine($"Cannot run: {reason}.");
    return 2;
}

Console.WriteLine($"{Environment.ProcessorCount} cores, {clients} concurrent clients, {seconds} s a measurement, {rounds} rounds");
await using var postgres = await PostgresServer.StartAsync(durable: true);
var results = new List<(string Name, double PerSecond)>();
for (var round = 1; round <= rounds; round++)
{
    var baseline = await BaselineAsync(await postgres.CreateDatabaseAsync($"baseline{round}"));
    var memory = await RegistrationsAsync(new Dictionary<string, string?> { ["Storage:Provider"] = "Memory" });
    var durable = await RegistrationsAsync(new Dictionary<string, string?>
    {
        ["Storage:Provider"] = "Postgres",
        ["ConnectionStrings:Postgres"] = await postgres.CreateDatabaseAsync($"gateway{round}"),
        ["Silo:AdvertisedAddress"] = "127.0.0.1",
    });
    Console.WriteLine($"round {round}: baseline {baseline:F0} commits/s; memory {memory:F0} reg/s ({memory / baseline:P0}); postgres {durable:F0} reg/s ({durable / baseline:P0})");
    results.Add(("baseline", baseline));
    results.Add(("memory", memory));
    results.Add(("postgres", durable));
}

double Median(string name) => results.Where(r => r.Name == name).Select(r => r.PerSecond).Order().ElementAt(rounds / 2);
var medianBaseline = Median("baseline");
Console.WriteLine();
Console.WriteLine("| measurement | per second (median) | ratio to baseline |");
Console.WriteLine("|---|---:|---:|");
Console.WriteLine($"| baseline: single-row INSERT commits, {clients} clients | {medianBaseline:F0} | 1.00 |");
Console.WriteLine($"| ephemeral registrations, embedded in-memory | {Median("memory"):F0} | {Median("memory") / medianBaseline:F2} |");
Console.WriteLine($"| ephemeral registrations, PostgreSQL | {Median("postgres"):F0} | {Median("postgres") / medianBaseline:F2} |");
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

async Task<double> RegistrationsAsync(Dictionary<string, string?> settings)
{
    settings["Admin:ApiKey"] = "bench-admin";
    var (app, httpUrl) = await InProcessGateway.StartAsync(settings);
    try
    {
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = clients }) { BaseAddress = httpUrl };
        using var createKey = new HttpRequestMessage(HttpMethod.Post, "/api/v1/tailnets/bench/keys")
        {
            Content = JsonContent.Create(new { reusable = true, ephemeral = true, preauthorized = true }),
        };
        createKey.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "bench-admin");
        var key = (await (await http.SendAsync(createKey)).EnsureSuccessStatusCode().Content.ReadFromJsonAsync<JsonElement>()).GetProperty("key").GetString();

        // Warm up first: tiered JIT and the grains on the path need a few seconds of load to settle.
        await RunAsync(async (stop, count) =>
        {
            while (!stop.IsCancellationRequested)
            {
                await RegisterAsync(http, key!);
            }
        }, warmup);

        return await RunAsync(async (stop, count) =>
        {
            while (!stop.IsCancellationRequested)
            {
                await RegisterAsync(http, key!);
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

async Task<double> RunAsync(Func<CancellationToken, Action, Task> client, TimeSpan? length = null)
{
    long done = 0;
    using var stop = new CancellationTokenSource(length ?? duration);
    var clock = Stopwatch.StartNew();
    await Task.WhenAll(Enumerable.Range(0, clients).Select(_ => Task.Run(() => client(stop.Token, () => Interlocked.Increment(ref done)))));
    return done / clock.Elapsed.TotalSeconds;
}

int Argument(string name, int fallback)
{
    var index = Array.IndexOf(args, name);
    return index >= 0 && index + 1 < args.Length && int.TryParse(args[index + 1], out var value) ? value : fallback;
}
