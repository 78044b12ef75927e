using System.Text.Json.Nodes;
using CsCheck;
using EphemeralOrleans.Contracts.Policy;
using EphemeralOrleans.Contracts.Validation;

namespace EphemeralOrleans.Tests;

/// <summary>
/// Property-based tests (CsCheck) of every parser of untrusted input in the contract: for arbitrary text, and for
/// valid values with one character inserted, removed or replaced (or a newline or space added), no parser throws
/// anything but its own refusal, whatever it accepts it reads back exactly (round trips), and valid values are
/// accepted. Each runs a bounded number of cases, so CI time stays fixed; a failure prints the seed that found it.
/// </summary>
public sealed class ParserPropertyTests
{
    private const int Iterations = 5_000;

    private static readonly Gen<string> AnyText = Gen.OneOf(
        Gen.String,
        Gen.String[Gen.Char[(char)0, (char)127], 0, 90],
        Gen.String[Gen.Char, 0, 90]);

    private static readonly Gen<string> Alnum = Gen.String[Gen.Char.AlphaNumeric, 1, 43];

    /// <summary>A valid value, or one with a single edit: the inputs most likely to slip through a pattern.</summary>
    private static Gen<string> NearlyValid(Gen<string> valid) =>
        Gen.Select(valid, Gen.Int[0, 1000], Gen.Char, Gen.Int[0, 5], (value, at, c, edit) =>
        {
            var i = at % (value.Length + 1);
            return edit switch
            {
                0 => value,
                1 => value.Insert(i, c.ToString()),
                2 => i < value.Length ? value.Remove(i, 1) : value + c,
                3 => i < value.Length ? string.Concat(value.AsSpan(0, i), c.ToString(), value.AsSpan(i + 1)) : value + c,
                4 => value + "\n",
                _ => " " + value,
            };
        });

    private static Gen<string> Inputs(Gen<string> valid) => Gen.OneOf(AnyText, valid, NearlyValid(valid), NearlyValid(valid));

    [Fact]
    public void Auth_keys_read_back_exactly_and_only_as_letters_and_digits()
    {
        var valid = Gen.Select(Alnum, Alnum, (id, secret) => Identifiers.FormatAuthKey(id, secret));
        valid.Sample(key => Identifiers.TryAuthKey(key, out _, out _), iter: Iterations);
        Inputs(valid).Sample(text =>
        {
            if (Identifiers.TryAuthKey(text, out var id, out var secret))
            {
                Assert.Equal(text, Identifiers.FormatAuthKey(id, secret));
                Assert.True(id.All(char.IsAsciiLetterOrDigit) && secret.All(char.IsAsciiLetterOrDigit), text);
            }
        }, iter: Iterations);
    }

    [Fact]
    public void Node_keys_are_exactly_nodekey_and_64_hex_digits_read_back_in_lowercase()
    {
        var valid = Gen.Select(Gen.Byte.Array[32], Gen.Bool, (bytes, upper) =>
            "nodekey:" + (upper ? Convert.ToHexString(bytes) : Convert.ToHexStringLower(bytes)));
        valid.Sample(key => Identifiers.TryNodeKey(key, out var normalized) && normalized == key.ToLowerInvariant(), iter: Iterations);
        Inputs(valid).Sample(text =>
        {
            if (Identifiers.TryNodeKey(text, out var nodeKey))
            {
                Assert.Equal(text.ToLowerInvariant(), nodeKey);
                Assert.Equal(72, nodeKey.Length);
                Assert.True(nodeKey[8..].All(char.IsAsciiHexDigitLower), text);
            }
        }, iter: Iterations);
    }

    [Fact]
    public void Node_tokens_split_into_a_node_id_that_routes_to_its_grain_and_a_secret()
    {
        var nodeId = Gen.Select(Gen.Byte.Array[32], Gen.Bool, Gen.Byte.Array[5], (key, sealedId, seal) =>
        {
            var id = NodeIds.NewNodeId(NodeIds.GrainKeyFor("default", "nodekey:" + Convert.ToHexStringLower(key)));
            return sealedId ? id + Secrets.Base32(seal) : id;
        });
        var valid = Gen.Select(nodeId, Alnum, (id, secret) => $"{id}.{secret}");
        valid.Sample(token => NodeIds.TryToken(token, out _, out _), iter: Iterations);
        Inputs(valid).Sample(text =>
        {
            if (NodeIds.TryToken(text, out var id, out var secret))
            {
                Assert.Equal(text, $"{id}.{secret}");
                Assert.True(NodeIds.TryGrainKey(id, out var grainKey) && id.StartsWith(grainKey + "-", StringComparison.Ordinal), text);
                Assert.True(id.Length is NodeIds.UnsealedLength or NodeIds.SealedLength, text);
            }
        }, iter: Iterations);
    }

    [Fact]
    public void Tailnet_names_are_a_dns_like_label_or_the_default()
    {
        var valid = Gen.String[Gen.Char["abcdefghijklmnopqrstuvwxyz0123456789.-"], 1, 63]
            .Where(s => char.IsAsciiLetterLower(s[0]) || char.IsAsciiDigit(s[0]));
        valid.Sample(name => Identifiers.TryTailnet(name, out var tailnet) && tailnet == name, iter: Iterations);
        Inputs(valid).Sample(text =>
        {
            if (Identifiers.TryTailnet(text, out var tailnet))
            {
                Assert.True(text == "-" ? tailnet == Identifiers.DefaultTailnet : tailnet == text, text);
                Assert.True(tailnet.Length <= 63 && tailnet.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '.' or '-'), text);
            }
        }, iter: Iterations);
    }

    [Fact]
    public void Display_text_refuses_control_characters_and_drops_format_ones()
    {
        var withFormat = Gen.Select(Gen.String[Gen.Char.AlphaNumeric, 0, 20], Gen.Char["\u200b\u200d\u202e\u2066\ufeff\u00ad"], Gen.Int[0, 20],
            (text, format, at) => text.Insert(Math.Min(at, text.Length), format.ToString()));
        Gen.OneOf(AnyText, withFormat).Sample(text =>
        {
            var shown = Identifiers.DisplayText(text);
            if (text.Any(char.IsControl))
            {
                Assert.Null(shown);
            }
            else
            {
                Assert.Equal(new string(text.Where(c => char.GetUnicodeCategory(c) != System.Globalization.UnicodeCategory.Format).ToArray()), shown);
            }
        }, iter: Iterations);
    }

    [Fact]
    public void Endpoints_that_are_accepted_read_back_as_themselves()
    {
        var valid = Gen.Select(Gen.Int[0, 255], Gen.Int[1, 65535], Gen.Bool, (last, port, v6) =>
            v6 ? $"[2001:db8::{last:x}]:{port}" : $"198.18.0.{last}:{port}");
        Gen.OneOf(AnyText, valid, NearlyValid(valid)).List[0, 4].Sample(texts =>
        {
            if (Endpoints.TryParse(texts, out var endpoints, out var error))
            {
                Assert.True(Endpoints.TryParse(endpoints.Select(e => e.ToString()).ToArray(), out var again, out _), string.Join(" ", texts));
                Assert.Equal(endpoints, again);
            }
            else
            {
                Assert.False(string.IsNullOrEmpty(error));
            }
        }, iter: Iterations);
    }

    [Fact]
    public void An_address_in_a_policy_or_an_endpoint_is_accepted_only_written_as_the_address_it_means()
    {
        // Four numbers of 0-255 in any of the forms IPAddress.TryParse reads (a leading zero is octal, 0x hex), or fewer
        // parts (the last one fills the rest), or one integer.
        var part = Gen.Int[0, 255];
        var written = Gen.Select(part, Gen.Int[0, 3], (value, form) => form switch
        {
            0 => value.ToString(),
            1 => "0" + Convert.ToString(value, 8),
            2 => "0x" + value.ToString("x"),
            _ => value.ToString("000"),
        });
        var ipv4 = Gen.OneOf(
            written.Array[4].Select(parts => string.Join('.', parts)),
            written.Array[1, 3].Select(parts => string.Join('.', parts)),
            Gen.UInt.Select(n => n.ToString()));
        ipv4.Sample(text =>
        {
            var parsed = System.Net.IPAddress.TryParse(text, out var address);
            var means = parsed && address!.ToString() == text;
            var policy = $$"""{"acls":[{"action":"accept","src":["{{text}}"],"dst":["{{text}}:22"]}]}""";
            var policyAccepted = true;
            try
            {
                PolicyDocument.Parse(policy);
            }
            catch (PolicyException)
            {
                policyAccepted = false;
            }

            // A shorthand that reads as another address is refused, in a policy and as an endpoint.
            if (parsed && !means)
            {
                Assert.False(policyAccepted, text);
                Assert.False(Endpoints.TryParse([$"{text}:51820"], out _, out _), text);
            }

            // Stored policies keep the meaning earlier versions gave them.
            if (parsed)
            {
                PolicyDocument.ParseStored(policy);
            }
        }, iter: Iterations);
    }

    [Fact]
    public void A_policy_document_parses_or_is_refused_with_a_policy_error_never_anything_else()
    {
        // Random documents of the policy's shape: the known sections and some others, with values of every JSON kind.
        var word = Gen.OneOf(Gen.Const("acls"), Gen.Const("groups"), Gen.Const("tagOwners"), Gen.Const("action"), Gen.Const("src"),
            Gen.Const("dst"), Gen.Const("accept"), Gen.Const("*"), Gen.Const("*:*"), Gen.Const("tag:ci"), Gen.Const("group:dev"),
            Gen.Const("100.64.0.0/10:22"), Gen.Const("tag:db:5432-5433"), Gen.Const("autogroup:member"), Gen.String[Gen.Char.AlphaNumeric, 0, 8]);
        var leaf = Gen.OneOf<JsonNode?>(word.Select(w => (JsonNode?)JsonValue.Create(w)), Gen.Int.Select(i => (JsonNode?)JsonValue.Create(i)),
            Gen.Bool.Select(b => (JsonNode?)JsonValue.Create(b)), Gen.Int.Select(_ => (JsonNode?)null));
        var array = leaf.List[0, 4].Select(items => (JsonNode?)new JsonArray(items.Select(i => i?.DeepClone()).ToArray()));
        var entry = Gen.Select(word, Gen.OneOf(leaf, array), (k, v) => (k, v));
        var rule = entry.List[0, 4].Select(ToObject);
        var section = Gen.OneOf(rule.List[0, 3].Select(r => (JsonNode?)new JsonArray(r.ToArray())), entry.List[0, 3].Select(ToObject), leaf);
        var document = Gen.Select(word, section, (k, v) => (k, v)).List[0, 4].Select(ToObject);
        Gen.OneOf(document.Select(d => d!.ToJsonString()), AnyText).Sample(json =>
        {
            try
            {
                PolicyDocument.Parse(json);
            }
            catch (PolicyException)
            {
            }
        }, iter: Iterations);

        static JsonNode? ToObject(List<(string Key, JsonNode? Value)> entries)
        {
            var json = new JsonObject();
            foreach (var (key, value) in entries)
            {
                json[key] = value?.DeepClone();
            }

            return json;
        }
    }
}
