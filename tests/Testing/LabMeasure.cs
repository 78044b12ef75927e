using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace EphemeralOrleans.Testing;

/// <summary>
/// What the benches measure between a lab's namespaces: one TCP stream's throughput (MiB/s), one-byte round trips
/// (ms, sorted), percentiles, and a process's CPU time from <c>/proc/PID/stat</c>.
/// </summary>
public static class LabMeasure
{
    public static async Task<double> ThroughputAsync(string fromNs, string toNs, IPAddress to, int mebibytes)
    {
        using var listener = NetworkLab.TcpSocketIn(toNs, to.AddressFamily);
        listener.Bind(new IPEndPoint(to, 7100));
        listener.Listen();
        var receiving = Task.Run(async () =>
        {
            using var connection = await listener.AcceptAsync();
            var buffer = new byte[1 << 16];
            long total = 0;
            int read;
            while ((read = await connection.ReceiveAsync(buffer)) > 0)
            {
                total += read;
            }

            return total;
        });
        using var client = NetworkLab.TcpSocketIn(fromNs, to.AddressFamily);
        await client.ConnectAsync(new IPEndPoint(to, 7100)).WaitAsync(TimeSpan.FromSeconds(30));
        var chunk = new byte[1 << 16];
        var clock = Stopwatch.StartNew();
        for (long sent = 0; sent < (long)mebibytes << 20; sent += chunk.Length)
        {
            await client.SendAsync(chunk);
        }

        client.Shutdown(SocketShutdown.Send);
        var received = await receiving.WaitAsync(TimeSpan.FromSeconds(60));
        return received / (1024.0 * 1024) / clock.Elapsed.TotalSeconds;
    }

    public static async Task<List<double>> RoundTripsAsync(string fromNs, string toNs, IPAddress to, int count)
    {
        using var listener = NetworkLab.TcpSocketIn(toNs, to.AddressFamily);
        listener.Bind(new IPEndPoint(to, 7200));
        listener.Listen();
        var echo = Task.Run(async () =>
        {
            using var connection = await listener.AcceptAsync();
            connection.NoDelay = true;
            var buffer = new byte[1];
            while (await connection.ReceiveAsync(buffer) > 0)
            {
                await connection.SendAsync(buffer);
            }
        });
        using var client = NetworkLab.TcpSocketIn(fromNs, to.AddressFamily);
        client.NoDelay = true;
        await client.ConnectAsync(new IPEndPoint(to, 7200)).WaitAsync(TimeSpan.FromSeconds(30));
        var times = new List<double>(count);
        var one = new byte[1];
        for (var i = 0; i < count; i++)
        {
            var clock = Stopwatch.StartNew();
            await client.SendAsync(one);
            await client.ReceiveAsync(one).WaitAsync(TimeSpan.FromSeconds(10));
            times.Add(clock.Elapsed.TotalMilliseconds);
        }

        client.Shutdown(SocketShutdown.Both);
        await echo.WaitAsync(TimeSpan.FromSeconds(10));
        times.Sort();
        return times;
    }

    /// <summary>Until a TCP connection from <paramref name="fromNs"/> to <paramref name="to"/>:7300 (a listener in
    /// <paramref name="toNs"/>) succeeds; throws after <paramref name="within"/>.</summary>
    public static async Task ReachableAsync(string fromNs, string toNs, IPAddress to, TimeSpan within)
    {
        using var listener = NetworkLab.TcpSocketIn(toNs, to.AddressFamily);
        listener.Bind(new IPEndPoint(to, 7300));
        listener.Listen();
        var clock = Stopwatch.StartNew();
        while (true)
        {
            using var client = NetworkLab.TcpSocketIn(fromNs, to.AddressFamily);
            using var attempt = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
            try
            {
                await client.ConnectAsync(new IPEndPoint(to, 7300), attempt.Token);
                return;
            }
            catch (Exception exception) when (exception is SocketException or OperationCanceledException && clock.Elapsed < within)
            {
            }
        }
    }

    public static double Percentile(List<double> sorted, double p) => sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];

    public static TimeSpan Cpu(int pid)
    {
        var fields = File.ReadAllText($"/proc/{pid}/stat").Split(')')[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var ticks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        return TimeSpan.FromSeconds(ticks / 100.0);
    }
}
