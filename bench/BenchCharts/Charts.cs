namespace EphemeralOrleans.Bench;

/// <summary>
/// The charts the benches draw beside their tables (PNG, 900×500), into a directory they are given
/// (<c>--plots</c>, by default <c>docs/plots</c> of the repository, where <c>docs/benchmarks.md</c> shows them).
/// </summary>
public static class Charts
{
    private const int Width = 900;
    private const int Height = 500;

    /// <summary>One bar per label.</summary>
    public static string Bars(string directory, string name, string title, string valueLabel, IReadOnlyList<(string Label, double Value)> bars)
    {
        var plot = new ScottPlot.Plot();
        var positions = Enumerable.Range(0, bars.Count).Select(i => (double)i).ToArray();
        plot.Add.Bars(positions, bars.Select(b => b.Value).ToArray());
        plot.Axes.Bottom.SetTicks(positions, bars.Select(b => b.Label).ToArray());
        plot.Axes.Margins(bottom: 0);
        plot.Title(title);
        plot.YLabel(valueLabel);
        return Save(plot, directory, name);
    }

    /// <summary>Lines over categories on the x axis (stream counts, say), one per series.</summary>
    public static string Lines(string directory, string name, string title, string xLabel, string yLabel, IReadOnlyList<string> categories,
        IReadOnlyList<(string Name, double[] Values)> series)
    {
        var plot = new ScottPlot.Plot();
        var positions = Enumerable.Range(0, categories.Count).Select(i => (double)i).ToArray();
        foreach (var (label, values) in series)
        {
            var line = plot.Add.Scatter(positions, values);
            line.LegendText = label;
            line.MarkerSize = 8;
        }

        plot.Axes.Bottom.SetTicks(positions, categories.ToArray());
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
        return Save(plot, directory, name);
    }

    /// <summary>The distribution of samples as a cumulative curve (the share of samples at or under each value), one
    /// per series: medians and tails side by side.</summary>
    public static string Distribution(string directory, string name, string title, string valueLabel, IReadOnlyList<(string Name, IReadOnlyList<double> Samples)> series)
    {
        var plot = new ScottPlot.Plot();
        foreach (var (label, samples) in series)
        {
            var sorted = samples.Order().ToArray();
            var shares = Enumerable.Range(1, sorted.Length).Select(i => 100.0 * i / sorted.Length).ToArray();
            var curve = plot.Add.Scatter(sorted, shares);
            curve.LegendText = label;
            curve.MarkerSize = 0;
            curve.LineWidth = 2;
        }

        plot.Title(title);
        plot.XLabel(valueLabel);
        plot.YLabel("% of samples at or under");
        plot.Axes.SetLimitsY(0, 100);
        plot.ShowLegend(ScottPlot.Alignment.LowerRight);
        return Save(plot, directory, name);
    }

    private static string Save(ScottPlot.Plot plot, string directory, string name)
    {
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, name + ".png");
        plot.SavePng(path, Width, Height);
        return path;
    }
}
