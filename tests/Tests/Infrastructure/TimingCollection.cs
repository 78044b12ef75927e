namespace EphemeralOrleans.Tests.Infrastructure;

/// <summary>
/// Tests that assert removal deadlines to within a second, or that load the machine with whole process topologies
/// (silos and gateways started and stopped, agent processes by the dozen), run alone: on two cores, a neighbouring class starting silo processes or 1,000 registrations delays grain timers
/// by more than the tolerance (seen in CI: 1 s late).
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TimingCollection
{
    public const string Name = "Timing";
}
