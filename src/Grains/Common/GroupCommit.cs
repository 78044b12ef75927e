namespace EphemeralOrleans.Grains.Common;

/// <summary>
/// Coalesces writes in a reentrant grain: while one write is in flight, every further request joins the next one,
/// so a burst of changes costs two writes, and each caller's task completes once its change is durable.
/// Must be used from the grain's own turns (it relies on their single-threadedness).
/// </summary>
internal sealed class GroupCommit(Func<Task> write)
{
    private TaskCompletionSource? _next;
    private bool _running;

    public Task Request()
    {
        _next ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var task = _next.Task;
        if (!_running)
        {
            _ = RunAsync();
        }

        return task;
    }

    private async Task RunAsync()
    {
        _running = true;
        try
        {
            while (_next is { } batch)
            {
                _next = null;
                try
                {
                    await write();
                    batch.SetResult();
                }
                catch (Exception exception)
                {
                    batch.SetException(exception);
                }
            }
        }
        finally
        {
            _running = false;
        }
    }
}
