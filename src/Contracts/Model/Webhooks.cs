namespace EphemeralOrleans.Contracts.Model;

/// <summary>What an admin asks for: where to deliver, which event types (empty: all; families like <c>node.*</c>).</summary>
[GenerateSerializer, Immutable, Alias("WebhookSpec")]
public sealed record WebhookSpec(
    [property: Id(0)] string Url,
    [property: Id(1)] string[] Types,
    [property: Id(2)] string? Description);

/// <summary>A webhook endpoint as operators see it: never its secret. <see cref="Cursor"/> is the id of the last event
/// delivered (or skipped); <see cref="Paused"/> set when it failed for too long, until an admin resumes it.</summary>
[GenerateSerializer, Immutable, Alias("WebhookInfo")]
public sealed record WebhookInfo(
    [property: Id(0)] string Id,
    [property: Id(1)] string Url,
    [property: Id(2)] string[] Types,
    [property: Id(3)] string? Description,
    [property: Id(4)] DateTimeOffset Created,
    [property: Id(5)] long Cursor,
    [property: Id(6)] bool Paused,
    [property: Id(7)] DateTimeOffset? FailingSince,
    [property: Id(8)] string? LastError,
    [property: Id(9)] long Delivered,
    [property: Id(10)] long Failed);

/// <summary>A new endpoint and its signing secret (<c>whsec_…</c>), shown this once.</summary>
[GenerateSerializer, Immutable, Alias("CreatedWebhook")]
public sealed record CreatedWebhook(
    [property: Id(0)] WebhookInfo Info,
    [property: Id(1)] string Secret);

/// <summary>One delivery attempt of one event: <c>delivered</c>, <c>failed</c> (with the status or error), or
/// <c>expired</c> (the event was older than the maximum age before it could be delivered; skipped).</summary>
[GenerateSerializer, Immutable, Alias("WebhookAttempt")]
public sealed record WebhookAttempt(
    [property: Id(0)] long EventId,
    [property: Id(1)] DateTimeOffset Time,
    [property: Id(2)] string Outcome,
    [property: Id(3)] int? Status,
    [property: Id(4)] string? Error,
    [property: Id(5)] double DurationMs,
    [property: Id(6)] int Attempt);
