using System.Text.Json;
using EphemeralOrleans.Agent.Control;
using EphemeralOrleans.Protocol;
using EphemeralOrleans.Protocol.V1;
using NSec.Cryptography;

namespace EphemeralOrleans.Agent;

/// <summary>The node's X25519 key pair; its public half is the node key the gateway knows the device by.</summary>
public sealed class NodeIdentity
{
    private static readonly KeyAgreementAlgorithm Algorithm = KeyAgreementAlgorithm.X25519;

    private NodeIdentity(byte[] privateKey, byte[] publicKey)
    {
        PrivateKey = privateKey;
        NodeKey = KeyText.NodeKey(publicKey);
    }

    public byte[] PrivateKey { get; }

    /// <summary><c>nodekey:</c> and the 32-byte public key in hex.</summary>
    public string NodeKey { get; }

    /// <summary>A registration of this node, with a proof of possession made now when the gateway's control key is
    /// known (gateways that publish none do not ask for one).</summary>
    public RegisterRequest RegisterRequest(string authKey, string hostname, bool ephemeral, byte[]? controlKey)
    {
        var request = new RegisterRequest { AuthKey = authKey, NodeKey = NodeKey, Hostname = hostname, Ephemeral = ephemeral };
        if (controlKey is not null)
        {
            Protocol.RegistrationProof proof;
            try
            {
                proof = Protocol.RegistrationProof.Create(PrivateKey, controlKey, new RegistrationFields(authKey, NodeKey, hostname, ephemeral), DateTimeOffset.UtcNow);
            }
            catch (ArgumentException exception)
            {
                throw new AgentFailure("invalid_control_key", exception.Message, transient: false);
            }

            request.Proof = new Protocol.V1.RegistrationProof { Timestamp = proof.Timestamp, Mac = Google.Protobuf.ByteString.CopyFrom(proof.Mac) };
        }

        return request;
    }

    public static NodeIdentity Generate()
    {
        using var key = Key.Create(Algorithm, new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport });
        return new NodeIdentity(key.Export(KeyBlobFormat.RawPrivateKey), key.PublicKey.Export(KeyBlobFormat.RawPublicKey));
    }

    public static NodeIdentity FromPrivateKey(byte[] privateKey)
    {
        using var key = Key.Import(Algorithm, privateKey, KeyBlobFormat.RawPrivateKey,
            new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport });
        return new NodeIdentity(privateKey, key.PublicKey.Export(KeyBlobFormat.RawPublicKey));
    }
}

/// <summary>What an agent with a state file remembers across restarts: its key, its node and its token.</summary>
public sealed record AgentState(string LoginServer, string PrivateKey, string NodeId, string NodeToken)
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static AgentState? Load(string path)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        return JsonSerializer.Deserialize<AgentState>(File.ReadAllText(path), Json)
            ?? throw new InvalidDataException($"{path} is not an agent state file.");
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
