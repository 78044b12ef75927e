using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using EphemeralOrleans.Testing;

// eo as shipped against eo as built, in one run: the framework-dependent `dotnet eo.dll` (what `dotnet build` makes)
// and the self-contained single-file `eo` (ReadyToRun, what the image and releases ship), both published here from
// the same source.
//   1. start: wall time of `eo version`, --runs times each, p50 and p90;
//   2. up: from process start to the node online at the gateway (`up --tun none`, memory state), and the resident
//      memory (VmRSS) of the agent process 3 s after that, --runs times each.
//
//   dotnet run -c Release --project bench/CliBench -- [--runs 20]
var runs = Array.IndexOf(args, "--runs") is var r and >= 0 ? int.Parse(args[r + 1], CultureInfo.InvariantCulture) : 20;
var root = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../.."));
var output = Directory.CreateTempSubdirectory("eo-cli-bench-").FullName;
Console.WriteLine($"{Environment.ProcessorCount} cores; publishing both forms of eo into {output} …");
await PublishAsync("framework", ["-c", "Release", "-o", Path.Combine(output, "framework")]);
await PublishAsync("single-file", ["-c", "Release", "-r", "linux-x64", "-o", Path.Combine(output, "single")]);
var forms = new (string Name, string File, string[] Prefix)[]
{
    ("dotnet eo.dll", "dotnet", [Path.Combine(output, "framework", "eo.dll")]),
    ("eo (single file)", Path.Combine(output, "single", "eo"), []),
};
foreach (var (name, file, _) in forms)
{
    var size = name.StartsWith("dotnet", StringComparison.Ordinal)
        ? Directory.GetFiles(Path.Combine(output, "framework")).Sum(f => new FileInfo(f).Length)
        : new FileInfo(file).Length;
    Console.WriteLine($"{name}: {size / (1024.0 * 1024):F1} MiB on disk{(name.StartsWith("dotnet", StringComparison.Ordinal) ? " (plus the shared .NET runtime)" : "")}");
}

const string AdminKey = "bench-admin-key-4Fq8Zr2Lw6Xt9Mv3";
var (app, httpUrl) = await InProcessGateway.StartAsync(new Dictionary<string, string?> { ["Admin:ApiKey"] = AdminKey, ["Logging:LogLevel:Default"] = "Warning" });
using var admin = new HttpClient { BaseAddress = httpUrl };
admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
using var created = await admin.PostAsJsonAsync("/api/v1/tailnets/-/keys", new { reusable = true, ephemeral = true, preauthorized = true });
var key = (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("key").GetString()!;
try
{
    var results = forms.ToDictionary(f => f.Name, _ => (Start: new List<double>(), Online: new List<double>(), Rss: new List<double>()));
    for (var i = 0; i < runs; i++)
    {
        // Interleaved, so drift on the machine affects both alike.
        foreach (var (name, file, prefix) in forms)
        {
            var clock = Stopwatch.StartNew();
            using (var version = Start(file, [.. prefix, "version"]))
            {
                await version.WaitForExitAsync();
            }

            results[name].Start.Add(clock.Elapsed.TotalMilliseconds);
            var hostname = $"bench-{i}-{(name.StartsWith("dotnet", StringComparison.Ordinal) ? "fd" : "sf")}";
            clock.Restart();
            using var up = Start(file, [.. prefix, "up", "--tun", "none", "--hostname", hostname, "--login-server", httpUrl.ToString(),
                "--auth-key", key, "--socket", Path.Combine(output, hostname + ".sock")]);
            while (!await OnlineAsync(hostname))
            {
                await Task.Delay(5);
            }

            results[name].Online.Add(clock.Elapsed.TotalMilliseconds);
            await Task.Delay(TimeSpan.FromSeconds(3));
            results[name].Rss.Add(Rss(up.Id));
            up.Kill(); // SIGTERM would log out; the bench only measures
            await up.WaitForExitAsync();
            using var _ = await admin.DeleteAsync($"/api/v1/tailnets/-/nodes/{await NodeIdAsync(hostname)}");
        }
    }

    foreach (var (name, (start, online, rss)) in results)
    {
        Console.WriteLine($"{name}: version p50 {P(start, 0.5):F0} ms p90 {P(start, 0.9):F0} ms; up to online p50 {P(online, 0.5):F0} ms p90 {P(online, 0.9):F0} ms; resident p50 {P(rss, 0.5):F1} MiB");
    }

    var (f, s) = (results[forms[0].Name], results[forms[1].Name]);
    Console.WriteLine($"single file against dotnet eo.dll: version {P(s.Start, 0.5) / P(f.Start, 0.5):F2}, online {P(s.Online, 0.5) / P(f.Online, 0.5):F2}, resident {P(s.Rss, 0.5) / P(f.Rss, 0.5):F2}");
}
finally
{
    await app.StopAsync();
    Directory.Delete(output, recursive: true);
}

return 0;

async Task PublishAsync(string what, string[] options)
{
    var publish = Start("dotnet", ["publish", Path.Combine(root, "src", "Agent"), .. options, "--nologo", "-v", "q"]);
    var text = await publish.StandardOutput.ReadToEndAsync() + await publish.StandardError.ReadToEndAsync();
    await publish.WaitForExitAsync();
    if (publish.ExitCode != 0)
    {
        throw new InvalidOperationException($"publishing the {what} form failed:\n{text}");
    }
}

async Task<bool> OnlineAsync(string hostname)
{
    var nodes = await admin.GetFromJsonAsync<JsonElement>("/api/v1/tailnets/-/nodes");
    return nodes.GetProperty("nodes").EnumerateArray().Any(n => n.GetProperty("hostname").GetString() == hostname && n.GetProperty("online").GetBoolean());
}

async Task<string> NodeIdAsync(string hostname) =>
    (await admin.GetFromJsonAsync<JsonElement>("/api/v1/tailnets/-/nodes")).GetProperty("nodes").EnumerateArray()
        .Single(n => n.GetProperty("hostname").GetString() == hostname).GetProperty("id").GetString()!;

static Process Start(string file, string[] arguments)
{
    var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
    foreach (var argument in arguments)
    {
        start.ArgumentList.Add(argument);
    }

    return Process.Start(start)!;
}

static double Rss(int pid) =>
    long.Parse(File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal))[6..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1024.0;

static double P(List<double> values, double p)
{
    var sorted = values.Order().ToList();
    return sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];
}
