using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using EphemeralOrleans.Protocol.V1;

namespace EphemeralOrleans.FanoutBench;

/// <summary>
/// Map streams held by this process, one per node token (or anonymous, for the raw broadcast), over a minimal
/// cleartext HTTP/2 client: up to <see cref="StreamsPerConnection"/> streams multiplexed on each connection, one read
/// loop per connection that parses frames and gRPC messages in place and hands each message to the callback. This one
/// process stands in for thousands of agents on their own machines; a general-purpose client spends a task, a buffer
/// and a message array per message per stream, and at 100k messages a second on two shared cores that is what the
/// bench would measure. It speaks only what these calls need: request headers (HPACK literals, no dynamic table),
/// flow control, SETTINGS and PING acknowledgements; response headers are skipped, not decoded.
/// </summary>
public sealed class StreamSet(Uri server, string?[] tokens, Action<MapFrame> onMessage)
{
    /// <summary>Kestrel's default limit of concurrent streams per connection, which neither server changes.</summary>
    public const int StreamsPerConnection = 100;

    private H2MapConnection[] _connections = [];
    private int _fullMaps;

    /// <summary>Streams whose server ended them (trailers or reset) while this set held them open.</summary>
    public int Ended => _connections.Sum(c => c.Ended);

    /// <summary>
    /// Opens every stream at once, on new connections; completes when each stream has its full map, or when every
    /// stream's request is sent if <paramref name="untilFullMaps"/> is false (the raw server sends no full map).
    /// </summary>
    public async Task OpenAllAsync(bool untilFullMaps = true)
    {
        Volatile.Write(ref _fullMaps, 0);
        var endpoint = new IPEndPoint(IPAddress.Parse(server.Host), server.Port);
        _connections = await Task.WhenAll(tokens.Chunk(StreamsPerConnection).Select(async chunk =>
        {
            var connection = await H2MapConnection.ConnectAsync(endpoint, server.Authority, Deliver);
            connection.Open(chunk);
            return connection;
        }));
        if (untilFullMaps)
        {
            await Bench.Until(() => Volatile.Read(ref _fullMaps) >= tokens.Length
                ? Task.FromResult(true)
                : Ended > 0 ? throw new InvalidOperationException($"{Ended} map streams ended before their full map") : Task.FromResult(false),
                "every full map");
        }
    }

    /// <summary>Drops every stream at once by closing the connections.</summary>
    public async Task CloseAllAsync()
    {
        foreach (var connection in _connections)
        {
            connection.Close();
        }

        await Task.WhenAll(_connections.Select(c => c.Completion));
    }

    private void Deliver(MapFrame message)
    {
        if (message.IsFull)
        {
            Interlocked.Increment(ref _fullMaps);
        }

        onMessage(message);
    }
}

/// <summary>One HTTP/2 connection carrying <c>ControlService.Map</c> streams; see <see cref="StreamSet"/>.</summary>
internal sealed class H2MapConnection
{
    private const byte Data = 0, Headers = 1, RstStream = 3, Settings = 4, Ping = 6, GoAway = 7, WindowUpdate = 8;
    private const byte EndStream = 0x1, Ack = 0x1, EndHeaders = 0x4, Padded = 0x8;
    private const int StreamWindow = 1 << 20;
    private const int ConnectionWindow = 1 << 30;
    private const int FrameHeader = 9;
    private static readonly byte[] Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8.ToArray();
    private static readonly string MapPath = $"/{ControlService.Descriptor.FullName}/Map";

    private readonly Socket _socket;
    private readonly string _authority;
    private readonly Action<MapFrame> _onMessage;
    private readonly Lock _writeLock = new();
    private readonly Lock _streamsLock = new();
    private readonly Dictionary<int, StreamState> _streams = [];
    private int _nextStreamId = 1;
    private long _connectionUnacknowledged;
    private int _ended;
    private volatile bool _closing;

    private H2MapConnection(Socket socket, string authority, Action<MapFrame> onMessage)
    {
        _socket = socket;
        _authority = authority;
        _onMessage = onMessage;
        Completion = Task.CompletedTask;
    }

    public Task Completion { get; private set; }

    public int Ended => Volatile.Read(ref _ended);

    public static async Task<H2MapConnection> ConnectAsync(IPEndPoint endpoint, string authority, Action<MapFrame> onMessage)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(endpoint);
        var connection = new H2MapConnection(socket, authority, onMessage);
        var start = new List<byte>(Preface);
        // SETTINGS: no server push, a 1 MiB window per stream; then a 1 GiB window for the connection.
        var settings = new byte[12];
        BinaryPrimitives.WriteUInt16BigEndian(settings, 0x2);
        BinaryPrimitives.WriteUInt32BigEndian(settings.AsSpan(2), 0);
        BinaryPrimitives.WriteUInt16BigEndian(settings.AsSpan(6), 0x4);
        BinaryPrimitives.WriteUInt32BigEndian(settings.AsSpan(8), StreamWindow);
        start.AddRange(Frame(Settings, 0, 0, settings));
        start.AddRange(WindowUpdateFrame(0, ConnectionWindow - 65_535));
        connection.Send([.. start]);
        connection.Completion = Task.Run(connection.ReadLoopAsync);
        return connection;
    }

    /// <summary>Opens one stream per token (null: no authorization header), all in one write.</summary>
    public void Open(IReadOnlyList<string?> tokens)
    {
        var frames = new List<byte>();
        // The request message: an empty MapRequest behind gRPC's 5-byte prefix (not compressed, length 0).
        var request = new byte[5];
        lock (_streamsLock)
        {
            foreach (var token in tokens)
            {
                var id = _nextStreamId;
                _nextStreamId += 2;
                _streams[id] = new StreamState();
                frames.AddRange(Frame(Headers, EndHeaders, id, RequestHeaders(token)));
                frames.AddRange(Frame(Data, EndStream, id, request));
            }
        }

        Send([.. frames]);
    }

    public void Close()
    {
        _closing = true;
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
        }

        _socket.Close();
    }

    private async Task ReadLoopAsync()
    {
        var buffer = new byte[1 << 18];
        int start = 0, end = 0;
        try
        {
            while (true)
            {
                if (buffer.Length - end < 1 << 15)
                {
                    Buffer.BlockCopy(buffer, start, buffer, 0, end - start);
                    end -= start;
                    start = 0;
                }

                var read = await _socket.ReceiveAsync(buffer.AsMemory(end), SocketFlags.None);
                if (read == 0)
                {
                    return;
                }

                end += read;
                while (end - start >= FrameHeader)
                {
                    var length = (buffer[start] << 16) | (buffer[start + 1] << 8) | buffer[start + 2];
                    if (FrameHeader + length > buffer.Length)
                    {
                        throw new InvalidDataException($"HTTP/2 frame of {length} bytes is larger than the read buffer");
                    }

                    if (end - start < FrameHeader + length)
                    {
                        break;
                    }

                    var streamId = BinaryPrimitives.ReadInt32BigEndian(buffer.AsSpan(start + 5)) & int.MaxValue;
                    OnFrame(buffer[start + 3], buffer[start + 4], streamId, buffer.AsSpan(start + FrameHeader, length));
                    start += FrameHeader + length;
                }

                if (start == end)
                {
                    start = end = 0;
                }
            }
        }
        catch (Exception) when (_closing)
        {
        }
    }

    private void OnFrame(byte type, byte flags, int streamId, ReadOnlySpan<byte> payload)
    {
        switch (type)
        {
            case Data:
                OnData(flags, streamId, payload);
                break;
            case Headers when (flags & EndStream) != 0:
            case RstStream:
                EndOf(streamId);
                break;
            case Settings when (flags & Ack) == 0:
                Send(Frame(Settings, Ack, 0, []));
                break;
            case Ping when (flags & Ack) == 0:
                Send(Frame(Ping, Ack, 0, payload));
                break;
            case GoAway:
                _closing = true;
                break;
        }
    }

    private void OnData(byte flags, int streamId, ReadOnlySpan<byte> payload)
    {
        // Flow control counts the whole payload, padding included; windows are topped up once half used.
        _connectionUnacknowledged += payload.Length;
        if (_connectionUnacknowledged >= ConnectionWindow / 2)
        {
            Send(WindowUpdateFrame(0, (int)_connectionUnacknowledged));
            _connectionUnacknowledged = 0;
        }

        StreamState? stream;
        lock (_streamsLock)
        {
            _streams.TryGetValue(streamId, out stream);
        }

        if (stream is null)
        {
            return;
        }

        stream.Unacknowledged += payload.Length;
        if (stream.Unacknowledged >= StreamWindow / 2 && (flags & EndStream) == 0)
        {
            Send(WindowUpdateFrame(streamId, stream.Unacknowledged));
            stream.Unacknowledged = 0;
        }

        if ((flags & Padded) != 0)
        {
            payload = payload[1..^payload[0]];
        }

        stream.Receive(payload, _onMessage);
        if ((flags & EndStream) != 0)
        {
            EndOf(streamId);
        }
    }

    private void EndOf(int streamId)
    {
        bool removed;
        lock (_streamsLock)
        {
            removed = _streams.Remove(streamId);
        }

        if (removed && !_closing)
        {
            Interlocked.Increment(ref _ended);
        }
    }

    private void Send(ReadOnlySpan<byte> bytes)
    {
        lock (_writeLock)
        {
            while (bytes.Length > 0)
            {
                bytes = bytes[_socket.Send(bytes)..];
            }
        }
    }

    private byte[] RequestHeaders(string? token)
    {
        var block = new List<byte> { 0x83, 0x86 }; // :method POST, :scheme http (HPACK static table 3 and 6)
        Literal(block, 4, MapPath); // :path
        Literal(block, 1, _authority); // :authority
        Literal(block, 31, "application/grpc"); // content-type
        block.Add(0x00); // te: trailers, a literal with a new name
        String(block, "te");
        String(block, "trailers");
        if (token is not null)
        {
            Literal(block, 23, "Bearer " + token); // authorization
        }

        return [.. block];

        // A literal header field without indexing, its name from the static table (RFC 7541 §6.2.2).
        static void Literal(List<byte> block, int nameIndex, string value)
        {
            Integer(block, 0x00, 4, nameIndex);
            String(block, value);
        }

        static void String(List<byte> block, string value)
        {
            var bytes = Encoding.ASCII.GetBytes(value);
            Integer(block, 0x00, 7, bytes.Length);
            block.AddRange(bytes);
        }

        static void Integer(List<byte> block, byte pattern, int prefixBits, int value)
        {
            var max = (1 << prefixBits) - 1;
            if (value < max)
            {
                block.Add((byte)(pattern | value));
                return;
            }

            block.Add((byte)(pattern | max));
            for (value -= max; value >= 128; value >>= 7)
            {
                block.Add((byte)((value & 0x7F) | 0x80));
            }

            block.Add((byte)value);
        }
    }

    private static byte[] WindowUpdateFrame(int streamId, int increment)
    {
        var payload = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(payload, increment);
        return Frame(WindowUpdate, 0, streamId, payload);
    }

    private static byte[] Frame(byte type, byte flags, int streamId, ReadOnlySpan<byte> payload)
    {
        var frame = new byte[FrameHeader + payload.Length];
        frame[0] = (byte)(payload.Length >> 16);
        frame[1] = (byte)(payload.Length >> 8);
        frame[2] = (byte)payload.Length;
        frame[3] = type;
        frame[4] = flags;
        BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(5), streamId);
        payload.CopyTo(frame.AsSpan(FrameHeader));
        return frame;
    }

    /// <summary>A stream's gRPC messages (5-byte prefix, then the message), which may span DATA frames.</summary>
    private sealed class StreamState
    {
        private byte[] _pending = [];
        private int _pendingCount;

        public int Unacknowledged { get; set; }

        public void Receive(ReadOnlySpan<byte> data, Action<MapFrame> onMessage)
        {
            if (_pendingCount == 0)
            {
                // The common case: whole messages inside the frame, read in place.
                data = DeliverWhole(data, onMessage);
                Append(data);
                return;
            }

            Append(data);
            var rest = DeliverWhole(_pending.AsSpan(0, _pendingCount), onMessage);
            rest.CopyTo(_pending);
            _pendingCount = rest.Length;
        }

        private static ReadOnlySpan<byte> DeliverWhole(ReadOnlySpan<byte> data, Action<MapFrame> onMessage)
        {
            while (data.Length >= 5)
            {
                var length = BinaryPrimitives.ReadInt32BigEndian(data[1..]);
                if (data.Length < 5 + length)
                {
                    break;
                }

                onMessage(MapFrame.Parse(data.Slice(5, length)));
                data = data[(5 + length)..];
            }

            return data;
        }

        private void Append(ReadOnlySpan<byte> data)
        {
            if (data.IsEmpty)
            {
                return;
            }

            if (_pending.Length < _pendingCount + data.Length)
            {
                Array.Resize(ref _pending, Math.Max(_pendingCount + data.Length, 2 * _pending.Length));
            }

            data.CopyTo(_pending.AsSpan(_pendingCount));
            _pendingCount += data.Length;
        }
    }
}
