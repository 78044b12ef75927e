namespace EphemeralOrleans.FanoutBench;

/// <summary>
/// What the load process needs of a <c>MapResponse</c>: its kind, its version, and which changes it carries, read
/// straight from the wire without building the nodes. This one process stands in for thousands of agents that would
/// each decode their own map on their own machine; decoding every node here (half a million a second at 10,000
/// streams) would measure the load generator, not the server. Raw broadcast and gateway are read the same way.
/// </summary>
public sealed class MapFrame
{
    public bool IsFull { get; private set; }

    public bool IsDelta { get; private set; }

    public long Version { get; private set; }

    /// <summary><c>MapWire.Key</c> of each change: <c>+hostname</c> per changed peer, <c>-id</c> per removed one.</summary>
    public List<long> Changes { get; } = [];

    /// <summary>Reads one <c>MapResponse</c> (a gRPC message's bytes).</summary>
    internal static MapFrame Parse(ReadOnlySpan<byte> response)
    {
        var frame = new MapFrame();
        var reader = new WireReader(response);
        while (reader.Next(out var field, out var type))
        {
            if (field is 1 or 2 && type == 2)
            {
                frame.IsFull = field == 1;
                frame.IsDelta = field == 2;
                frame.ReadMap(reader.Bytes(), delta: field == 2);
            }
            else
            {
                reader.Skip(type);
            }
        }

        return frame;
    }

    private void ReadMap(ReadOnlySpan<byte> map, bool delta)
    {
        var reader = new WireReader(map);
        while (reader.Next(out var field, out var type))
        {
            switch (field)
            {
                case 1 when type == 0:
                    Version = (long)reader.Varint();
                    break;
                case 2 when delta && type == 2:
                    var node = new WireReader(reader.Bytes());
                    while (node.Next(out var nodeField, out var nodeType))
                    {
                        if (nodeField == 3 && nodeType == 2)
                        {
                            Changes.Add(MapWire.Key((byte)'+', node.Bytes()));
                        }
                        else
                        {
                            node.Skip(nodeType);
                        }
                    }

                    break;
                case 3 when delta && type == 2:
                    Changes.Add(MapWire.Key((byte)'-', reader.Bytes()));
                    break;
                default:
                    reader.Skip(type);
                    break;
            }
        }
    }

    private ref struct WireReader(ReadOnlySpan<byte> buffer)
    {
        private readonly ReadOnlySpan<byte> _buffer = buffer;
        private int _position;

        public bool Next(out int field, out int type)
        {
            if (_position >= _buffer.Length)
            {
                field = type = 0;
                return false;
            }

            var tag = Varint();
            field = (int)(tag >> 3);
            type = (int)(tag & 7);
            return true;
        }

        public ulong Varint()
        {
            ulong value = 0;
            for (var shift = 0; ; shift += 7)
            {
                var b = _buffer[_position++];
                value |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80)
                {
                    return value;
                }
            }
        }

        public ReadOnlySpan<byte> Bytes()
        {
            var length = (int)Varint();
            var bytes = _buffer.Slice(_position, length);
            _position += length;
            return bytes;
        }

        public void Skip(int type)
        {
            switch (type)
            {
                case 0: Varint(); break;
                case 1: _position += 8; break;
                case 2: Bytes(); break;
                case 5: _position += 4; break;
                default: throw new InvalidDataException($"wire type {type}");
            }
        }
    }
}

public static class MapWire
{
    /// <summary>64-bit FNV-1a of a prefix byte and ASCII text: a change's key without allocating a string per change.</summary>
    public static long Key(byte prefix, ReadOnlySpan<byte> ascii)
    {
        var hash = Step(14695981039346656037UL, prefix);
        foreach (var b in ascii)
        {
            hash = Step(hash, b);
        }

        return (long)hash;
    }

    public static long Key(char prefix, string ascii) => Key((byte)prefix, System.Text.Encoding.ASCII.GetBytes(ascii));

    private static ulong Step(ulong hash, byte b) => (hash ^ b) * 1099511628211UL;
}
