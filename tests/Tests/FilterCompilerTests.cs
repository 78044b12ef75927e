extern alias agent;
using System.Diagnostics;
using agent::EphemeralOrleans.Agent.Control;
using agent::EphemeralOrleans.Agent.Dataplane;
using Wire = agent::EphemeralOrleans.Protocol.V1;

namespace EphemeralOrleans.Tests;

/// <summary>The packet filter compiler: a netmap's filter and peers → one nftables table, compared with golden files
/// (<c>Golden/*.nft</c>; <c>UPDATE_GOLDEN=1</c> rewrites them) and, where nft runs, checked by nft itself.</summary>
public sealed class FilterCompilerTests
{
    private static readonly Wire.Node[] Peers =
    [
        Node("ci-1", "100.64.0.2", "fd7a:115c:a1e0::6440:2", "tag:ci"),
        Node("ci-2", "100.64.0.3", "fd7a:115c:a1e0::6440:3", "tag:ci", "tag:build"),
        Node("laptop", "100.64.0.9", "fd7a:115c:a1e0::6440:9"),
    ];

    [Fact]
    public void Tags_names_addresses_cidrs_ports_and_ranges_become_one_table_that_drops_the_rest() => AssertGolden("filter-rules.nft", FilterCompiler.Compile("eo0",
        [
            Rule("5432", "tag:ci"),
            Rule("22,80,8000-8080", "laptop", "198.18.7.0/24", "2001:db8::1"),
            Rule("53", "10.1.2.3/8"),
            Rule("*", "tag:build"),
            Rule("443", "*"),
            Rule("1-0,x", "tag:ci"), // no valid port: no rule
            Rule("9", "tag:nobody"), // a tag no peer has: no rule
        ], Peers.Select(p => NetmapNode.TryParse(p)!)));

    [Fact]
    public void No_rules_let_in_nothing_but_replies_and_anyone_to_anything_is_a_single_accept()
    {
        AssertGolden("filter-none.nft", FilterCompiler.Compile("eo-test.1", [], []));
        AssertGolden("filter-all.nft", FilterCompiler.Compile("eo0", [Rule("*", "*")], []));
    }

    private static void AssertGolden(string name, string script)
    {
        var path = Path.Combine(GoldenDirectory(), name);
        if (Environment.GetEnvironmentVariable("UPDATE_GOLDEN") == "1")
        {
            File.WriteAllText(path, script);
        }

        Assert.Equal(File.ReadAllText(path), script);
        if (NftCheck(script) is { } error)
        {
            Assert.Fail($"nft refuses {name}: {error}");
        }
    }

    /// <summary>nft's own check (-c, nothing applied), where nft and the privilege to run it exist.</summary>
    private static string? NftCheck(string script)
    {
        if (!File.Exists("/usr/sbin/nft") || Environment.UserName != "root")
        {
            return null;
        }

        var start = new ProcessStartInfo("/usr/sbin/nft", ["-c", "-f", "-"]) { RedirectStandardInput = true, RedirectStandardError = true };
        using var nft = Process.Start(start)!;
        nft.StandardInput.Write(script);
        nft.StandardInput.Close();
        var error = nft.StandardError.ReadToEnd();
        nft.WaitForExit();
        return nft.ExitCode == 0 ? null : error;
    }

    private static string GoldenDirectory()
    {
        var directory = AppContext.BaseDirectory;
        while (!Directory.Exists(Path.Combine(directory, "Golden")) || !File.Exists(Path.Combine(directory, "Tests.csproj")))
        {
            directory = Path.GetDirectoryName(directory) ?? throw new DirectoryNotFoundException("tests/Tests/Golden");
        }

        return Path.Combine(directory, "Golden");
    }

    private static Wire.PacketFilterRule Rule(string ports, params string[] sources) => new() { Ports = ports, Sources = { sources } };

    private static Wire.Node Node(string name, string ipv4, string ipv6, params string[] tags) => new()
    {
        Id = $"n-{name}", Name = name, Ipv4 = ipv4, Ipv6 = ipv6, NodeKey = "nodekey:" + new string('a', 64), Tags = { tags },
    };
}
