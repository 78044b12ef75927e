using System.CommandLine;
using System.CommandLine.Parsing;

namespace EphemeralOrleans.Agent.Cli;

/// <summary>
/// Usage errors as a script (and its log) should see them: one line on stderr, in the terms of the flags as typed,
/// the closest flag or command suggested, and never a secret — an unexpected word is not echoed (it is often the
/// value of a mistyped <c>--authkey</c>), and whatever is printed is scrubbed of the values of the secret flags and
/// environment variables.
/// </summary>
public static class CliErrors
{
    /// <summary>Flags whose values are secrets.</summary>
    private static readonly string[] SecretFlags = ["--auth-key", "--admin-key"];

    /// <summary>Environment variables whose values are secrets.</summary>
    private static readonly string[] SecretVariables = ["EO_AUTH_KEY", "EO_ADMIN_KEY", "EO_ID_TOKEN"];

    /// <summary>The one line for the first parse error of <paramref name="parsed"/>.</summary>
    public static string Describe(ParseResult parsed, IReadOnlyList<string> args)
    {
        var command = parsed.CommandResult.Command;
        var help = $"see `{CommandPath(parsed.CommandResult)} --help`";
        if (parsed.UnmatchedTokens.Count > 0)
        {
            var token = parsed.UnmatchedTokens[0];
            if (token.StartsWith('-'))
            {
                var flag = token.Split('=', 2)[0];
                var suggestion = Closest(flag, AllOptions(parsed.CommandResult).SelectMany(o => o.Aliases.Prepend(o.Name)));
                return $"unknown flag {flag}{(suggestion is null ? "" : $" (did you mean {suggestion}?)")}; {help}";
            }

            if (command.Subcommands.Count > 0 && LooksLikeAWord(token))
            {
                var suggestion = Closest(token, command.Subcommands.Select(c => c.Name));
                return $"unknown command {token}{(suggestion is null ? "" : $" (did you mean {suggestion}?)")}; {help}";
            }

            var position = IndexOf(args, token) + 1;
            return $"unexpected argument{(position > 0 ? $" #{position}" : "")} (not shown: it could be a secret); {help}";
        }

        var error = parsed.Errors[0];
        var message = error.SymbolResult is ArgumentResult { Argument: var argument } && error.Message.StartsWith("Required argument missing", StringComparison.Ordinal)
            ? $"missing <{argument.Name}>"
            : error.Message.TrimEnd('.');
        return Redact($"{message}; {help}", args);
    }

    /// <summary><paramref name="text"/> without the values of the secret flags in <paramref name="args"/> and of the
    /// secret environment variables.</summary>
    public static string Redact(string text, IReadOnlyList<string> args)
    {
        var secrets = new List<string>();
        for (var i = 0; i < args.Count; i++)
        {
            foreach (var flag in SecretFlags)
            {
                if (args[i] == flag && i + 1 < args.Count)
                {
                    secrets.Add(args[i + 1]);
                }
                else if (args[i].StartsWith(flag + "=", StringComparison.Ordinal))
                {
                    secrets.Add(args[i][(flag.Length + 1)..]);
                }
            }
        }

        secrets.AddRange(SecretVariables.Select(Environment.GetEnvironmentVariable).OfType<string>());
        foreach (var secret in secrets.Where(s => s.Length >= 4).OrderByDescending(s => s.Length))
        {
            text = text.Replace(secret, "[redacted]", StringComparison.Ordinal);
        }

        return text;
    }

    /// <summary>One line: the first line of a message, trimmed.</summary>
    public static string OneLine(string message) => message.Split('\n', 2)[0].Trim();

    /// <summary>The candidate closest to <paramref name="typed"/> by edit distance, when it is close enough to be a typo.</summary>
    public static string? Closest(string typed, IEnumerable<string> candidates)
    {
        var best = candidates.Distinct(StringComparer.Ordinal)
            .Select(c => (Candidate: c, Distance: Distance(typed.ToLowerInvariant(), c.ToLowerInvariant())))
            .OrderBy(c => c.Distance).ThenBy(c => c.Candidate, StringComparer.Ordinal)
            .FirstOrDefault();
        return best.Candidate is not null && best.Distance <= Math.Max(2, typed.Length / 3) ? best.Candidate : null;
    }

    private static int Distance(string a, string b)
    {
        var previous = Enumerable.Range(0, b.Length + 1).ToArray();
        for (var i = 1; i <= a.Length; i++)
        {
            var current = new int[b.Length + 1];
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            }

            previous = current;
        }

        return previous[b.Length];
    }

    /// <summary>A short lower-case word: a command someone mistyped, not a key pasted in the wrong place.</summary>
    private static bool LooksLikeAWord(string token) => token.Length <= 16 && token.All(c => c is >= 'a' and <= 'z' or '-');

    private static int IndexOf(IReadOnlyList<string> args, string token)
    {
        for (var i = 0; i < args.Count; i++)
        {
            if (args[i] == token)
            {
                return i;
            }
        }

        return -1;
    }

    private static IEnumerable<Option> AllOptions(CommandResult result)
    {
        for (SymbolResult? current = result; current is not null; current = current.Parent)
        {
            if (current is CommandResult { Command: var command })
            {
                foreach (var option in command.Options.Where(o => current == result || o.Recursive))
                {
                    yield return option;
                }
            }
        }
    }

    private static string CommandPath(CommandResult result)
    {
        var names = new List<string>();
        for (SymbolResult? current = result; current is not null; current = current.Parent)
        {
            if (current is CommandResult { Command: var command })
            {
                names.Add(command is RootCommand ? "eo" : command.Name);
            }
        }

        names.Reverse();
        return string.Join(' ', names);
    }
}
