using System.Text.Json;
using EphemeralOrleans.Contracts.Grains;
using EphemeralOrleans.Contracts.Model;
using EphemeralOrleans.Grains.Common;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Concurrency;
using Orleans.Configuration;
using Polly;
using Polly.Retry;

namespace EphemeralOrleans.Grains.Webhooks;

[GenerateSerializer, Alias("eo.WebhookEndpointState")]
public sealed class WebhookEndpointState
{
    [Id(0)] public string Id { get; set; } = "";
    [Id(1)] public string Url { get; set; } = "";
    [Id(2)] public string[] Types { get; set; } = [];
    [Id(3)] public string? Description { get; set; }
    [Id(4)] public DateTimeOffset Created { get; set; }

    /// <summary>The HMAC key of the signatures: receivers need the same bytes, so it is kept as it is (not hashed).</summary>
    [Id(5)] public string Secret { get; set; } = "";

    /// <summary>The last event id delivered or skipped: delivery goes on after it.</summary>
    [Id(6)] public long Cursor { get; set; }
    [Id(7)] public bool Paused { get; set; }
    [Id(8)] public DateTimeOffset? FailingSince { get; set; }
    [Id(9)] public string? LastError { get; set; }
    [Id(10)] public long Delivered { get; set; }
    [Id(11)] public long Failed { get; set; }
    [Id(12)] public List<WebhookAttempt> Attempts { get; set; } = [];

    public WebhookEndpointState Copy()
    {
        var copy = (WebhookEndpointState)MemberwiseClone();
        copy.Attempts = [.. Attempts];
        return copy;
    }

    public WebhookInfo Info() => new(Id, Url, Types, Description, Created, Cursor, Paused, FailingSince, LastError, Delivered, Failed);
}

[GenerateSerializer, Alias("eo.WebhooksState")]
public sealed class WebhooksState
{
    [Id(0)] public List<WebhookEndpointState> Endpoints { get; set; } = [];
}

/// <summary>
/// A tailnet's webhooks (see <see cref="IWebhookGrain"/>). Each endpoint has its own delivery loop in this activation:
/// it reads the audit log after the endpoint's cursor and posts each matching event in id order; a failed delivery is
/// retried by Polly (exponential backoff with jitter, a timeout per attempt) until it succeeds, the event passes
/// <see cref="WebhookOptions.MaxAge"/> (skipped), or the endpoint has failed for <see cref="WebhookOptions.PauseAfter"/>
/// (paused). The cursor is written after each page of events, so a crash redelivers at most that page: at least once.
/// </summary>
[Reentrant]
public sealed partial class WebhookGrain : Grain, IWebhookGrain, IRemindable
{
    private const string ReminderName = "webhooks";
    private const int PageSize = 100;
    private const int AttemptsKept = 50;
    private static readonly TimeSpan IdlePoll = TimeSpan.FromSeconds(30);

    private readonly IPersistentState<WebhooksState> _state;
    private readonly IGrainFactory _grains;
    private readonly WebhookSender _sender;
    private readonly WebhookOptions _options;
    private readonly TimeSpan _reminderPeriod;
    private readonly TimeProvider _time;
    private readonly ILogger<WebhookGrain> _logger;
    private readonly GroupCommit _commit;
    private readonly ResiliencePipeline<Outcome> _retries;
    private readonly Dictionary<string, Delivery> _deliveries = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _deactivating = new();
    private List<WebhookEndpointState> _live = [];

    public WebhookGrain(
        [PersistentState("webhooks", StorageNames.State)] IPersistentState<WebhooksState> state,
        IGrainFactory grains,
        WebhookSender sender,
        IOptions<WebhookOptions> options,
        IOptions<ReminderOptions> reminderOptions,
        TimeProvider time,
        ILogger<WebhookGrain> logger)
    {
        _state = state;
        _grains = grains;
        _sender = sender;
        _options = options.Value;
        _reminderPeriod = _options.ReminderPeriod > reminderOptions.Value.MinimumReminderPeriod ? _options.ReminderPeriod : reminderOptions.Value.MinimumReminderPeriod;
        _time = time;
        _logger = logger;
        // Until delivered, skipped as too old, or paused; continuations stay on this activation (see DeliverAsync).
        _retries = new ResiliencePipelineBuilder<Outcome> { TimeProvider = time }
            .AddRetry(new RetryStrategyOptions<Outcome>
            {
                ShouldHandle = args => ValueTask.FromResult(args.Outcome.Result == Outcome.Failed),
                MaxRetryAttempts = int.MaxValue,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = _options.FirstRetryDelay,
                MaxDelay = _options.MaxRetryDelay,
            })
            .Build();
        // Storage serializes the state after the write has started: it gets a copy, never the state being changed.
        _commit = new GroupCommit(() =>
        {
            _state.State = new WebhooksState { Endpoints = _live.Select(e => e.Copy()).ToList() };
            return _state.WriteStateAsync();
        });
    }

    private string Tailnet => this.GetPrimaryKeyString();

    /// <summary>An endpoint's loop and the signal that wakes it.</summary>
    private sealed class Delivery(string id)
    {
        public string Id { get; } = id;
        public CancellationTokenSource Stop { get; } = new();
        public Task Loop { get; set; } = Task.CompletedTask;
        private TaskCompletionSource _signal = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Wake() => _signal.TrySetResult();

        public async Task WaitAsync(TimeSpan timeout, TimeProvider time, CancellationToken cancellationToken)
        {
            try
            {
                await _signal.Task.WaitAsync(timeout, time, cancellationToken);
            }
            catch (TimeoutException)
            {
            }

            _signal = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
    }

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _live = _state.State.Endpoints.Select(e => e.Copy()).ToList();
        foreach (var endpoint in _live)
        {
            Start(endpoint.Id);
        }

        return Task.CompletedTask;
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        await _deactivating.CancelAsync();
        try
        {
            await Task.WhenAll(_deliveries.Values.Select(d => d.Loop)).WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // Deactivation's own deadline: the loops end on their own, the cursors are durable up to their last page.
        }
    }

    public async Task<CreatedWebhook?> Create(WebhookSpec spec)
    {
        if (_live.Count >= _options.MaxEndpoints)
        {
            return null;
        }

        var endpoint = new WebhookEndpointState
        {
            Id = "wh" + Contracts.Validation.Secrets.Base62(12),
            Url = spec.Url,
            Types = spec.Types,
            Description = spec.Description,
            Created = _time.GetUtcNow(),
            Secret = WebhookSender.NewSecret(),
            // From now on: what the log holds already is not sent.
            Cursor = await _grains.GetGrain<IEventLogGrain>(Tailnet).LastId(),
        };
        _live.Add(endpoint);
        await _commit.Request();
        await this.RegisterOrUpdateReminder(ReminderName, _reminderPeriod, _reminderPeriod);
        Start(endpoint.Id);
        LogCreated(Tailnet, endpoint.Id, endpoint.Url);
        return new CreatedWebhook(endpoint.Info(), endpoint.Secret);
    }

    public Task<WebhookInfo[]> List() => Task.FromResult(_live.Select(e => e.Info()).ToArray());

    public Task<WebhookInfo?> Get(string id) => Task.FromResult(Find(id)?.Info());

    public Task<WebhookAttempt[]?> Attempts(string id) => Task.FromResult(Find(id)?.Attempts.ToArray());

    public async Task<bool> Delete(string id)
    {
        if (Find(id) is not { } endpoint)
        {
            return false;
        }

        _live.Remove(endpoint);
        if (_deliveries.Remove(id, out var delivery))
        {
            await delivery.Stop.CancelAsync();
        }

        await _commit.Request();
        if (_live.Count == 0 && await this.GetReminder(ReminderName) is { } reminder)
        {
            await this.UnregisterReminder(reminder);
        }

        return true;
    }

    public async Task<WebhookInfo?> Resume(string id)
    {
        if (Find(id) is not { } endpoint)
        {
            return null;
        }

        if (endpoint.Paused)
        {
            endpoint.Paused = false;
            endpoint.FailingSince = null;
            await _commit.Request();
            LogResumed(Tailnet, id);
        }

        Start(id);
        _deliveries[id].Wake();
        return endpoint.Info();
    }

    public Task Wake()
    {
        foreach (var delivery in _deliveries.Values)
        {
            delivery.Wake();
        }

        return Task.CompletedTask;
    }

    public async Task ReceiveReminder(string reminderName, TickStatus status)
    {
        // Activation has started the loops; a tailnet without endpoints needs no reminder.
        if (_live.Count == 0 && await this.GetReminder(ReminderName) is { } reminder)
        {
            await this.UnregisterReminder(reminder);
        }
    }

    private WebhookEndpointState? Find(string id) => _live.FirstOrDefault(e => e.Id == id);

    private void Start(string id)
    {
        if (_deliveries.TryGetValue(id, out var running) && !running.Loop.IsCompleted)
        {
            return;
        }

        var delivery = new Delivery(id);
        _deliveries[id] = delivery;
        // Started in this turn: the loop's continuations run on this activation, interleaved with its calls.
        delivery.Loop = RunAsync(delivery);
    }

    private async Task RunAsync(Delivery delivery)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(delivery.Stop.Token, _deactivating.Token);
        var stopping = linked.Token;
        var log = _grains.GetGrain<IEventLogGrain>(Tailnet);
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                if (Find(delivery.Id) is not { } endpoint)
                {
                    return;
                }

                if (endpoint.Paused)
                {
                    await delivery.WaitAsync(Timeout.InfiniteTimeSpan, _time, stopping);
                    continue;
                }

                var page = await log.Read(new EventQuery(endpoint.Cursor, PageSize));
                if (page.Length == 0)
                {
                    await delivery.WaitAsync(IdlePoll, _time, stopping);
                    continue;
                }

                var start = endpoint.Cursor;
                foreach (var e in page)
                {
                    if (endpoint.Types.Length > 0 && !endpoint.Types.Any(t => EventTypes.Matches(t, e.Type)))
                    {
                        endpoint.Cursor = e.Id;
                        continue;
                    }

                    if (!await DeliverAsync(endpoint, e, stopping))
                    {
                        break; // paused, or stopping
                    }

                    endpoint.Cursor = e.Id;
                }

                if (endpoint.Cursor != start && Find(delivery.Id) == endpoint)
                {
                    await _commit.Request();
                }
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception exception)
            {
                // The log or storage is unreachable for now: the cursor has not moved past anything undelivered.
                LogLoopFailed(exception, Tailnet, delivery.Id);
                try
                {
                    await Task.Delay(_options.FirstRetryDelay, _time, stopping);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    /// <summary>Delivers one event, retrying; true when it is done with (delivered, or skipped as too old), false when
    /// the endpoint was paused or delivery is stopping.</summary>
    private async Task<bool> DeliverAsync(WebhookEndpointState endpoint, AuditEvent e, CancellationToken stopping)
    {
        var messageId = $"evt_{Tailnet}_{e.Id}";
        var body = Payload(Tailnet, e);
        var attempt = 0;
        var context = ResilienceContextPool.Shared.Get(continueOnCapturedContext: true, stopping);
        try
        {
            var outcome = await _retries.ExecuteAsync(async (_, _) => await AttemptAsync(endpoint, e, messageId, body, ++attempt, stopping), context, 0);
            return outcome is Outcome.Delivered or Outcome.Expired;
        }
        finally
        {
            ResilienceContextPool.Shared.Return(context);
        }
    }

    /// <summary>The Standard Webhooks payload: <c>{type, timestamp, data}</c>, the event's own data copied as it is stored.</summary>
    private static byte[] Payload(string tailnet, AuditEvent e)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(256 + e.Data.Length);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("type", e.Type);
            json.WriteString("timestamp", e.Time);
            json.WriteStartObject("data");
            json.WriteNumber("id", e.Id);
            json.WriteString("tailnet", tailnet);
            json.WriteString("time", e.Time);
            json.WriteString("type", e.Type);
            json.WriteString("actor", e.Actor);
            json.WriteString("target", e.Target);
            if (e.NodeId is not null)
            {
                json.WriteString("node", e.NodeId);
            }

            json.WritePropertyName("data");
            json.WriteRawValue(e.Data, skipInputValidation: true);
            json.WriteEndObject();
            json.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    internal enum Outcome
    {
        Delivered,
        Failed,
        Expired,
        Paused,
    }

    private async ValueTask<Outcome> AttemptAsync(WebhookEndpointState endpoint, AuditEvent e, string messageId, byte[] body, int attempt, CancellationToken stopping)
    {
        stopping.ThrowIfCancellationRequested();
        var now = _time.GetUtcNow();
        if (endpoint.Paused || Find(endpoint.Id) != endpoint)
        {
            return Outcome.Paused;
        }

        if (now - e.Time > _options.MaxAge)
        {
            Record(endpoint, new WebhookAttempt(e.Id, now, "expired", null, $"older than {_options.MaxAge}", 0, attempt));
            await _commit.Request();
            return Outcome.Expired;
        }

        int? status = null;
        string? error;
        var started = _time.GetTimestamp();
        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(stopping))
        {
            timeout.CancelAfter(_options.AttemptTimeout);
            try
            {
                status = (int)await _sender.SendAsync(endpoint.Url, endpoint.Secret, messageId, body, timeout.Token);
                error = status is >= 200 and < 300 ? null : $"HTTP {status}";
            }
            catch (OperationCanceledException) when (!stopping.IsCancellationRequested)
            {
                error = $"no answer within {_options.AttemptTimeout}";
            }
            catch (HttpRequestException exception)
            {
                error = exception.Message;
            }
        }

        var duration = _time.GetElapsedTime(started).TotalMilliseconds;
        if (error is null)
        {
            endpoint.Delivered++;
            endpoint.FailingSince = null;
            endpoint.LastError = null;
            Record(endpoint, new WebhookAttempt(e.Id, now, "delivered", status, null, Math.Round(duration, 1), attempt));
            return Outcome.Delivered;
        }

        endpoint.Failed++;
        endpoint.FailingSince ??= now;
        endpoint.LastError = error;
        Record(endpoint, new WebhookAttempt(e.Id, now, "failed", status, error, Math.Round(duration, 1), attempt));
        if (now - endpoint.FailingSince >= _options.PauseAfter)
        {
            endpoint.Paused = true;
            LogPaused(Tailnet, endpoint.Id, now - endpoint.FailingSince.Value, error);
        }

        await _commit.Request();
        return endpoint.Paused ? Outcome.Paused : Outcome.Failed;
    }

    private static void Record(WebhookEndpointState endpoint, WebhookAttempt attempt)
    {
        endpoint.Attempts.Add(attempt);
        if (endpoint.Attempts.Count > AttemptsKept)
        {
            endpoint.Attempts.RemoveAt(0);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Tailnet {Tailnet}: webhook {WebhookId} created for {Url}")]
    private partial void LogCreated(string tailnet, string webhookId, string url);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Tailnet {Tailnet}: webhook {WebhookId} paused after failing for {Failing} ({Error}); resume it once the receiver is fixed")]
    private partial void LogPaused(string tailnet, string webhookId, TimeSpan failing, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "Tailnet {Tailnet}: webhook {WebhookId} resumed")]
    private partial void LogResumed(string tailnet, string webhookId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Tailnet {Tailnet}: webhook {WebhookId} could not read the log or save its cursor; retrying")]
    private partial void LogLoopFailed(Exception exception, string tailnet, string webhookId);
}
