using System.Text.Json;

namespace EphemeralOrleans.Agent.State;

/// <summary>What an agent with a state file remembers across restarts: its key, its node and its token.</summary>
public sealed record AgentState(string LoginServer, string PrivateKey, string NodeId, string NodeToken)
{
    /// <summary>The <c>--ca-file</c> the node joined with: <c>logout --state</c> trusts the gateway as <c>up</c> did.</summary>
    public string? CaFile { get; init; }

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    /// <summary>The saved state, or null when the file does not exist.</summary>
    /// <exception cref="InvalidDataException">The file is not an agent state file.</exception>
    public static AgentState? Load(string path)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        try
        {
            if (JsonSerializer.Deserialize<AgentState>(File.ReadAllText(path), Json) is { LoginServer: not null, PrivateKey: not null, NodeId: not null, NodeToken: not null } state
                && Convert.FromBase64String(state.PrivateKey).Length == 32)
            {
                return state;
            }
        }
        catch (Exception exception) when (exception is JsonException or FormatException)
        {
        }

        throw new InvalidDataException($"{path} is not an agent state file.");
    }

    /// <summary>Writes the state readable by its owner only (0600), replacing the old file atomically.</summary>
    public void Save(string path)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(directory);
        var temporary = Path.Combine(directory, $".{Path.GetFileName(path)}.{Environment.ProcessId}.tmp");
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        using (var stream = new FileStream(temporary, options))
        {
            JsonSerializer.Serialize(stream, this, Json);
            stream.Flush(flushToDisk: true);
        }

        File.Move(temporary, path, overwrite: true);
    }

    public static void Delete(string path) => File.Delete(path);
}
