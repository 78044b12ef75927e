using System.Collections;
using System.Net;

namespace EphemeralOrleans.Contracts.Model;

/// <summary>
/// A node's durable fields: what the node grain stores, the registry persists and policy matches on. Two records are
/// equal exactly when nothing but presence (<see cref="NodePresence"/>) could tell the nodes apart, which is what the
/// registry and the gateways' feeds ask ("only presence changed").
/// </summary>
[GenerateSerializer, Immutable, Alias("eo.NodeRecord")]
public sealed record NodeRecord(
    [property: Id(0)] string Id,
    [property: Id(1)] string Name,
    [property: Id(2)] string Hostname,
    [property: Id(3)] string NodeKey,
    [property: Id(4)] IPAddress Ipv4,
    [property: Id(5)] IPAddress Ipv6,
    [property: Id(6)] bool Ephemeral,
    [property: Id(7)] ValueList<string> Tags,
    [property: Id(8)] DateTimeOffset Created,
    [property: Id(9)] bool Authorized,
    [property: Id(10)] bool LoggedOut,
    [property: Id(11)] string KeyId,
    [property: Id(12)] string Tailnet,
    [property: Id(13)] int SessionEpoch)
{
    /// <summary>The UDP endpoints the node's WireGuard listens on, as its agent last reported them (peers dial these).</summary>
    [Id(14)]
    public ValueList<IPEndPoint> Endpoints { get; init; } = ValueList<IPEndPoint>.Empty;

    /// <summary>For a node registered with an OIDC token (<see cref="KeyId"/> <c>trust:&lt;policy id&gt;</c>): the token's subject.</summary>
    [Id(15)]
    public string? Subject { get; init; }
}

/// <summary>What changes without a write: whether the node has a map stream, and when it was last seen.</summary>
[GenerateSerializer, Immutable, Alias("eo.NodePresence")]
public sealed record NodePresence([property: Id(0)] bool Online, [property: Id(1)] DateTimeOffset? LastSeen);

/// <summary>A node as the registry holds it: its record and its presence.</summary>
[GenerateSerializer, Immutable, Alias("eo.NodeEntry")]
public sealed record NodeEntry([property: Id(0)] NodeRecord Record, [property: Id(1)] NodePresence Presence)
{
    public string Id => Record.Id;

    /// <summary>The same node, offline (how a stored entry is loaded: presence is not stored).</summary>
    public NodeEntry Offline() => Presence.Online ? this with { Presence = Presence with { Online = false } } : this;
}

/// <summary>An immutable list compared by its items, so that records holding one compare by value.</summary>
[GenerateSerializer, Immutable, Alias("eo.ValueList`1")]
public sealed class ValueList<T> : IReadOnlyList<T>, IEquatable<ValueList<T>>
{
    [Id(0)]
    private readonly T[] _items;

    public ValueList(IEnumerable<T> items) => _items = items.ToArray();

    public static ValueList<T> Empty { get; } = new([]);

    public int Count => _items.Length;

    public T this[int index] => _items[index];

    public bool Contains(T item) => Array.IndexOf(_items, item) >= 0;

    public T[] ToArray() => (T[])_items.Clone();

    public bool Equals(ValueList<T>? other) =>
        other is not null && (ReferenceEquals(this, other) || _items.AsSpan().SequenceEqual(other._items));

    public override bool Equals(object? obj) => Equals(obj as ValueList<T>);

    public override int GetHashCode()
    {
        var hash = new HashCode();
        foreach (var item in _items)
        {
            hash.Add(item);
        }

        return hash.ToHashCode();
    }

    public IEnumerator<T> GetEnumerator() => ((IEnumerable<T>)_items).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => _items.GetEnumerator();
}
