using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using EphemeralOrleans.Testing;
using EphemeralOrleans.Tests.Infrastructure;
using Npgsql;

namespace EphemeralOrleans.Tests;

/// <summary>
/// <c>scripts/cluster.sh</c>, the docker-compose topology as local processes, run as a user would: it must come up with
/// two silos and a gateway on its own PostgreSQL, serve agents, expose metrics and the dashboard, and stop cleanly.
/// </summary>
public sealed class ClusterScriptTests
{
    [PostgresFact]
    public async Task The_local_cluster_script_runs_two_silos_and_a_gateway_and_stops_cleanly()
    {
        // <root>/src/Gateway/bin/<configuration>/net10.0/EphemeralOrleans.Gateway.dll
        var root = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(HostProcess.ProjectDll("Gateway"))!, "..", "..", "..", "..", ".."));
        var (http, grpc, pg, metrics1, metrics2) = (FreePort.Next(), FreePort.Next(), FreePort.Next(), FreePort.Next(), FreePort.Next());
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = root };
        start.ArgumentList.Add(Path.Combine(root, "scripts", "cluster.sh"));
        start.Environment["EO_NO_BUILD"] = "1";
        start.Environment["EO_CONFIGURATION"] = AppContext.BaseDirectory.Contains("/Release/") ? "Release" : "Debug";
        start.Environment["EO_HTTP_PORT"] = http.ToString();
        start.Environment["EO_GRPC_PORT"] = grpc.ToString();
        start.Environment["EO_PG_PORT"] = pg.ToString();
        start.Environment["EO_SILO_PORTS"] = $"{FreePort.Next()} {FreePort.Next()} {FreePort.Next()} {FreePort.Next()}";
        start.Environment["EO_METRICS_PORTS"] = $"{metrics1} {metrics2}";
        start.Environment["EO_ADMIN_KEY"] = ApiClient.AdminKey;
        var keyring = Directory.CreateTempSubdirectory("eo-keyring-").FullName;
        start.Environment["EO_KEYRING_DIR"] = keyring;
        var output = new StringBuilder();
        using var script = Process.Start(start)!;
        var ready = new TaskCompletionSource();
        script.OutputDataReceived += (_, e) =>
        {
            lock (output)
            {
                output.AppendLine(e.Data);
            }

            if (e.Data?.StartsWith("READY ", StringComparison.Ordinal) == true)
            {
                ready.TrySetResult();
            }
        };
        script.ErrorDataReceived += (_, e) =>
        {
            lock (output)
            {
                output.AppendLine(e.Data);
            }
        };
        script.BeginOutputReadLine();
        script.BeginErrorReadLine();
        try
        {
            await ready.Task.WaitAsync(TimeSpan.FromSeconds(120));

            using var client = new GatewayClient(new Uri($"http://127.0.0.1:{http}"));
            var key = (await client.CreateKeyAsync()).Str("key");
            var (node, token) = await client.RegisterAsync(key, hostname: "via-script");
            await using (var map = await client.OpenMapAsync(token))
            {
                var full = await map.WaitForAsync(m => m.Type() == "full", TimeSpan.FromSeconds(10), "the full map");
                Assert.Equal(node.Str("id"), full.GetProperty("self").Str("id"));
            }

            // The gateway is ready with one silo; the second may still be joining.
            await Poll.UntilAsync(async () =>
            {
                await using var connection = new NpgsqlConnection($"Host=127.0.0.1;Port={pg};Username=postgres;Database=eo");
                await connection.OpenAsync();
                await using var silos = new NpgsqlCommand("SELECT count(*) FROM orleansmembershiptable WHERE status = 3", connection);
                return (long)(await silos.ExecuteScalarAsync())! == 2;
            }, TimeSpan.FromSeconds(60), "two active silos in the membership table", everyMs: 250);

            using var probe = new HttpClient();
            foreach (var port in new[] { metrics1, metrics2 })
            {
                // A silo is active in the membership table a moment before its metrics endpoint listens (seen in CI).
                await Poll.UntilAsync(async () =>
                {
                    try
                    {
                        return (await probe.GetStringAsync($"http://127.0.0.1:{port}/metrics")).Contains("orleans_", StringComparison.Ordinal);
                    }
                    catch (HttpRequestException)
                    {
                        return false;
                    }
                }, TimeSpan.FromSeconds(30), $"Orleans metrics on port {port}", everyMs: 250);
            }

            Assert.Contains("eo_gateway_registrations_total", await probe.GetStringAsync($"http://127.0.0.1:{http}/metrics"));
            Assert.Equal(HttpStatusCode.OK, (await probe.GetAsync($"http://127.0.0.1:{http}/dashboard/")).StatusCode);

            using (var stop = Process.Start("kill", ["-TERM", script.Id.ToString()])!)
            {
                await stop.WaitForExitAsync();
            }

            await script.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(120)).Token);
            Assert.Equal(0, script.ExitCode);
            foreach (var port in new[] { http, grpc, pg, metrics1, metrics2 })
            {
                Assert.False(IsListening(port), $"port {port} still open after the script stopped");
            }
        }
        catch (Exception exception) when (exception is not Xunit.Sdk.XunitException)
        {
            lock (output)
            {
                throw new Xunit.Sdk.XunitException($"{exception.Message}\n{output}");
            }
        }
        finally
        {
            if (!script.HasExited)
            {
                script.Kill(entireProcessTree: true);
            }

            Directory.Delete(keyring, recursive: true);
        }
    }

    private static bool IsListening(int port)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.Connect(IPAddress.Loopback, port);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
