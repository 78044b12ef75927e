using System.Diagnostics;
using System.Net;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;
using EphemeralOrleans.Tests.Infrastructure;

namespace EphemeralOrleans.Tests;

/// <summary>
/// The gateway's relay over real WebSockets: opaque packets between nodes the policy pairs, addressed by node id,
/// nothing between others, no entry without a valid token, and a receiver that never reads stalls nobody.
/// </summary>
public sealed class RelayTests : GatewayTest
{
    private static readonly TimeSpan Within = TimeSpan.FromSeconds(10);

    protected override IReadOnlyDictionary<string, string?>? Settings => new Dictionary<string, string?>
    {
        ["Relay:QueuePackets"] = "64",
    };

    [Fact]
    public async Task Packets_pass_both_ways_between_paired_nodes_byte_for_byte_and_carry_the_senders_id()
    {
        var (a, b, _) = await TailnetAsync("relay-pass", policy: null);
        var payload = RandomNumberGenerator.GetBytes(1400);
        await SendAsync(a.Socket, b.Id, payload);
        var (from, received) = await ReceiveAsync(b);
        Assert.Equal(a.Id, from);
        Assert.Equal(payload, received);

        // Many, in order, the other way (a few MB, checksummed).
        var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var sent = new List<byte[]>();
        for (var i = 0; i < 2000; i++)
        {
            var packet = RandomNumberGenerator.GetBytes(1400);
            sent.Add(packet);
            hash.AppendData(packet);
            await SendAsync(b.Socket, a.Id, packet);
            if (i % 32 == 31)
            {
                for (var j = sent.Count - 32; j < sent.Count; j++)
                {
                    var (sender, got) = await ReceiveAsync(a);
                    Assert.Equal(b.Id, sender);
                    Assert.Equal(sent[j], got);
                }
            }
        }
    }

    [Fact]
    public async Task Nodes_the_policy_does_not_pair_get_nothing_through_and_a_revoked_pairing_stops_at_once()
    {
        // ci may reach db; db and ci see each other; the untagged node sees neither.
        const string policy = """{"acls":[{"action":"accept","src":["tag:ci"],"dst":["tag:db:5432"]}],"tagOwners":{"tag:ci":[],"tag:db":[]}}""";
        var tailnet = "relay-policy";
        await Gateway.SetPolicyAsync(policy, tailnet);
        var ci = await ConnectAsync(tailnet, ["tag:ci"], "ci");
        var db = await ConnectAsync(tailnet, ["tag:db"], "db");
        var other = await ConnectAsync(tailnet, [], "other");
        await SeesAsync(ci, db.Id);

        await SendAsync(other.Socket, db.Id, "from other"u8.ToArray());
        await SendAsync(other.Socket, ci.Id, "from other"u8.ToArray());
        await SendAsync(ci.Socket, db.Id, "from ci"u8.ToArray());
        var (from, received) = await ReceiveAsync(db);
        Assert.Equal(ci.Id, from);
        Assert.Equal("from ci", Encoding.ASCII.GetString(received));
        await AssertNothingAsync(ci);

        // Withdraw the permission: the next packet is not carried.
        await Gateway.SetPolicyAsync("""{"acls":[]}""", tailnet);
        await Task.Delay(TimeSpan.FromMilliseconds(500)); // the change reaches this gateway's copy of the tailnet
        await SendAsync(ci.Socket, db.Id, "after revoke"u8.ToArray());
        await AssertNothingAsync(db);
    }

    [Fact]
    public async Task Without_a_valid_token_or_as_plain_http_the_relay_refuses()
    {
        // Plain HTTP: the credential is checked first, so a caller without one learns nothing more.
        using (var anonymous = await Gateway.Http.GetAsync("/api/v1/machine/relay"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        }

        var (_, nodeToken) = await Gateway.RegisterAsync((await Gateway.CreateKeyAsync()).Str("key"), hostname: "plain");
        using var plainRequest = new HttpRequestMessage(HttpMethod.Get, "/api/v1/machine/relay") { Headers = { Authorization = new("Bearer", nodeToken) } };
        using var plain = await Gateway.Http.SendAsync(plainRequest);
        Assert.Equal(HttpStatusCode.BadRequest, plain.StatusCode);
        Assert.Contains("websocket_required", await plain.Content.ReadAsStringAsync());

        foreach (var token in new[] { null, "nonsense", "eo-node-x-y" })
        {
            using var socket = new ClientWebSocket();
            if (token is not null)
            {
                socket.Options.SetRequestHeader("Authorization", "Bearer " + token);
            }

            socket.Options.CollectHttpResponseDetails = true;
            await Assert.ThrowsAsync<WebSocketException>(() => socket.ConnectAsync(RelayUrl, CancellationToken.None));
            Assert.Equal(HttpStatusCode.Unauthorized, socket.HttpStatusCode);
        }
    }

    [Fact]
    public async Task A_receiver_that_never_reads_loses_its_own_packets_and_stalls_no_other_pair()
    {
        var (a, b, c) = await TailnetAsync("relay-slow", policy: null);
        // c never reads: flood it far past its queue.
        var flood = new byte[1400];
        for (var i = 0; i < 5000; i++)
        {
            await SendAsync(a.Socket, c!.Id, flood);
        }

        // a → b still flows at once.
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < 200; i++)
        {
            var packet = BitConverter.GetBytes(i);
            await SendAsync(a.Socket, b.Id, packet);
            var (_, got) = await ReceiveAsync(b);
            Assert.Equal(i, BitConverter.ToInt32(got));
        }

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"200 round trips took {clock.Elapsed} beside a stalled receiver");
    }

    [Fact]
    public async Task An_agent_that_vanishes_or_connects_again_leaves_no_connection_behind()
    {
        var relay = Gateway.Service<EphemeralOrleans.Gateway.Relay.RelayHub>();
        var (a, b, _) = await TailnetAsync("relay-gone", policy: null);
        Assert.Equal(3, relay.ConnectionCount);

        // Killed: its socket just goes away (no close handshake).
        a.Socket.Abort();
        await Poll.UntilAsync(() => Task.FromResult(relay.ConnectionCount == 2), Within, "the dead connection to be dropped");
        await SendAsync(b.Socket, a.Id, [1, 2, 3]); // nothing to deliver it to, and nothing breaks

        // A second connection of the same node replaces its first.
        var again = new ClientWebSocket();
        _owned.Add(new SocketOwner(again));
        again.Options.SetRequestHeader("Authorization", "Bearer " + b.Token);
        await again.ConnectAsync(RelayUrl, CancellationToken.None);
        await b.Pump.WaitAsync(Within);
        Assert.Equal(2, relay.ConnectionCount);
    }

    [Fact]
    public async Task Oversized_and_malformed_frames_are_not_carried()
    {
        var (a, b, _) = await TailnetAsync("relay-bad", policy: null);
        await SendRawAsync(a.Socket, [0, 1, 2, 3]); // an empty id
        await SendRawAsync(a.Socket, [200, 1, 2]); // an id longer than the frame
        await SendAsync(a.Socket, "not-a-node", [1, 2, 3]);
        await AssertNothingAsync(b);

        // Too big: the relay closes the connection.
        await SendAsync(a.Socket, b.Id, new byte[64 * 1024]);
        await a.Pump.WaitAsync(Within);
        Assert.Equal(WebSocketCloseStatus.MessageTooBig, a.Socket.CloseStatus);
        await AssertNothingAsync(b);
    }

    private Uri RelayUrl => new(Gateway.Http.BaseAddress!.ToString().Replace("http://", "ws://", StringComparison.Ordinal) + "api/v1/machine/relay");

    /// <summary>A node's relay socket, read by one pump into <see cref="Inbox"/> (cancelling a WebSocket read would abort it).</summary>
    private sealed record Peer(string Id, string Token, ClientWebSocket Socket, MapReader Map, Channel<(string From, byte[] Payload)> Inbox, Task Pump);

    private readonly List<IAsyncDisposable> _owned = [];

    private async Task<(Peer A, Peer B, Peer? C)> TailnetAsync(string tailnet, string? policy)
    {
        if (policy is not null)
        {
            await Gateway.SetPolicyAsync(policy, tailnet);
        }

        var (a, b, c) = (await ConnectAsync(tailnet, [], "a"), await ConnectAsync(tailnet, [], "b"), await ConnectAsync(tailnet, [], "c"));
        await SeesAsync(a, b.Id, c.Id);
        return (a, b, c);
    }

    /// <summary>Until <paramref name="peer"/>'s netmap holds <paramref name="ids"/>: as an agent, it relays only to peers its map names.</summary>
    private static async Task SeesAsync(Peer peer, params string[] ids)
    {
        var missing = new HashSet<string>(ids, StringComparer.Ordinal);
        await peer.Map.WaitForAsync(m =>
        {
            var nodes = m.Str("type") switch
            {
                "full" => m.GetProperty("peers").EnumerateArray(),
                "delta" => m.GetProperty("peersChanged").EnumerateArray(),
                _ => default,
            };
            if (nodes.Any())
            {
                missing.ExceptWith(nodes.Select(n => n.Str("id")));
            }

            return missing.Count == 0;
        }, Within, "the peers in the netmap");
    }

    /// <summary>A node with its map stream open (the relay follows the tailnets of this gateway's streams) and its relay socket.</summary>
    private async Task<Peer> ConnectAsync(string tailnet, string[] tags, string hostname)
    {
        var key = (await Gateway.CreateKeyAsync(tags: tags, tailnet: tailnet)).Str("key");
        var (node, token) = await Gateway.RegisterAsync(key, hostname: hostname);
        var map = await Gateway.OpenMapAsync(token);
        _owned.Add(map);
        var socket = new ClientWebSocket();
        socket.Options.SetRequestHeader("Authorization", "Bearer " + token);
        await socket.ConnectAsync(RelayUrl, CancellationToken.None);
        _owned.Add(new SocketOwner(socket));
        var inbox = Channel.CreateUnbounded<(string, byte[])>();
        return new Peer(node.Str("id"), token, socket, map, inbox, PumpAsync(socket, inbox.Writer));
    }

    private static async Task PumpAsync(WebSocket socket, ChannelWriter<(string, byte[])> inbox)
    {
        var buffer = new byte[128 * 1024];
        try
        {
            while (true)
            {
                var length = 0;
                ValueWebSocketReceiveResult result;
                do
                {
                    result = await socket.ReceiveAsync(buffer.AsMemory(length), CancellationToken.None);
                    length += result.Count;
                }
                while (!result.EndOfMessage);

                if (result.MessageType == WebSocketMessageType.Close)
                {
                    return;
                }

                var idLength = buffer[0];
                inbox.TryWrite((Encoding.ASCII.GetString(buffer, 1, idLength), buffer[(1 + idLength)..length]));
            }
        }
        catch (WebSocketException)
        {
        }
        finally
        {
            inbox.TryComplete();
        }
    }

    private static Task SendAsync(WebSocket socket, string to, byte[] payload)
    {
        var id = Encoding.ASCII.GetBytes(to);
        return SendRawAsync(socket, [(byte)id.Length, .. id, .. payload]);
    }

    private static async Task SendRawAsync(WebSocket socket, byte[] frame) =>
        await socket.SendAsync(frame, WebSocketMessageType.Binary, endOfMessage: true, CancellationToken.None);

    private static async Task<(string From, byte[] Payload)> ReceiveAsync(Peer peer)
    {
        using var timeout = new CancellationTokenSource(Within);
        return await peer.Inbox.Reader.ReadAsync(timeout.Token);
    }

    private static async Task AssertNothingAsync(Peer peer)
    {
        await Task.Delay(TimeSpan.FromMilliseconds(700));
        Assert.False(peer.Inbox.Reader.TryRead(out var frame), $"a frame from {frame.From} of {frame.Payload?.Length} bytes arrived");
    }

    public override async Task DisposeAsync()
    {
        foreach (var owned in _owned)
        {
            await owned.DisposeAsync();
        }

        await base.DisposeAsync();
    }

    private sealed class SocketOwner(ClientWebSocket socket) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            socket.Abort();
            socket.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
