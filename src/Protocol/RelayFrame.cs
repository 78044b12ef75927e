using System.Text;

namespace EphemeralOrleans.Protocol;

/// <summary>
/// The relay's frame, both ways (one WebSocket binary message each): one byte n, n bytes of a node id (ASCII), then
/// the packet. A sender names the receiver; the receiver gets the sender's id. Gateway and agent both use this.
/// </summary>
public static class RelayFrame
{
    public static byte[] Encode(string nodeId, ReadOnlySpan<byte> packet)
    {
        var id = Encoding.ASCII.GetBytes(nodeId);
        var frame = new byte[1 + id.Length + packet.Length];
        frame[0] = (byte)id.Length;
        id.CopyTo(frame, 1);
        packet.CopyTo(frame.AsSpan(1 + id.Length));
        return frame;
    }

    /// <summary>The node id and packet of <paramref name="frame"/>; false for a frame with no id or a cut-off one.</summary>
    public static bool TryDecode(ReadOnlySpan<byte> frame, out string nodeId, out ReadOnlySpan<byte> packet)
    {
        if (frame.Length < 1 || frame[0] == 0 || frame.Length < 1 + frame[0])
        {
            nodeId = "";
            packet = default;
            return false;
        }

        nodeId = Encoding.ASCII.GetString(frame.Slice(1, frame[0]));
        packet = frame[(1 + frame[0])..];
        return true;
    }
}
