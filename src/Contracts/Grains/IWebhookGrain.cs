using EphemeralOrleans.Contracts.Model;
using Orleans.Concurrency;

namespace EphemeralOrleans.Contracts.Grains;

/// <summary>
/// A tailnet's webhook endpoints and their delivery (keyed by the tailnet's name). Each endpoint gets the tailnet's
/// audit events in id order, at least once, from a durable cursor into the log: the log is the outbox. A reminder
/// brings deliveries back after a silo failure.
/// </summary>
[Alias("eo.IWebhookGrain")]
public interface IWebhookGrain : IGrainWithStringKey
{
    /// <summary>Adds an endpoint (validated by the caller) that gets the events from now on; null when the tailnet
    /// has its maximum of endpoints (<c>Webhooks:MaxEndpoints</c>).</summary>
    [Alias("Create")]
    Task<CreatedWebhook?> Create(WebhookSpec spec);

    /// <summary>Every endpoint, oldest first.</summary>
    [AlwaysInterleave]
    [Alias("List")]
    Task<WebhookInfo[]> List();

    /// <summary>One endpoint; null when there is none.</summary>
    [AlwaysInterleave]
    [Alias("Get")]
    Task<WebhookInfo?> Get(string id);

    /// <summary>The latest delivery attempts of an endpoint, newest last; null when there is none.</summary>
    [AlwaysInterleave]
    [Alias("Attempts")]
    Task<WebhookAttempt[]?> Attempts(string id);

    /// <summary>Deletes an endpoint (its deliveries stop); false when there was none.</summary>
    [Alias("Delete")]
    Task<bool> Delete(string id);

    /// <summary>Resumes a paused endpoint from where it stopped; null when there is none.</summary>
    [Alias("Resume")]
    Task<WebhookInfo?> Resume(string id);

    /// <summary>New events are in the log (the log calls this after each write).</summary>
    [OneWay, AlwaysInterleave]
    [Alias("Wake")]
    Task Wake();
}
