using System.Diagnostics;

namespace EphemeralOrleans.Agent.Dataplane;

/// <summary>A data-plane step that failed: what was being done and what the system said.</summary>
public sealed class DataplaneException(string message) : Exception(message);

/// <summary>The OS tools the data plane drives (<c>ip</c>, <c>nft</c>): run with a deadline, their error output kept.</summary>
public static class SystemTools
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    /// <summary>Runs <paramref name="file"/>; throws with its error output when it fails.</summary>
    public static async Task RunAsync(string file, IReadOnlyList<string> args, string? input = null, CancellationToken cancellationToken = default)
    {
        var (exitCode, output) = await TryRunAsync(file, args, input, cancellationToken);
        if (exitCode != 0)
        {
            throw new DataplaneException($"{file} {string.Join(' ', args)}: {output.Trim()}");
        }
    }

    /// <summary>Runs <paramref name="file"/>; its exit code (-1 when it could not start) and its output and errors.</summary>
    public static async Task<(int ExitCode, string Output)> TryRunAsync(string file, IReadOnlyList<string> args, string? input = null,
        CancellationToken cancellationToken = default)
    {
        var start = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = input is not null,
        };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        Process process;
        try
        {
            process = Process.Start(start) ?? throw new DataplaneException($"{file} did not start.");
        }
        catch (System.ComponentModel.Win32Exception exception)
        {
            return (-1, $"{file}: {exception.Message}");
        }

        using (process)
        {
            var output = process.StandardOutput.ReadToEndAsync(cancellationToken);
            var error = process.StandardError.ReadToEndAsync(cancellationToken);
            if (input is not null)
            {
                await process.StandardInput.WriteAsync(input);
                process.StandardInput.Close();
            }

            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadline.CancelAfter(Deadline);
            try
            {
                await process.WaitForExitAsync(deadline.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                throw new DataplaneException($"{file} {string.Join(' ', args)} did not finish within {Deadline.TotalSeconds:0} s.");
            }

            return (process.ExitCode, await output + await error);
        }
    }

    /// <summary>The full path of <paramref name="name"/> on PATH, or null.</summary>
    public static string? Find(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(directory => Path.Combine(directory, name))
            .FirstOrDefault(File.Exists);
}
