"""The rule index finds exactly the rules that testing every rule in turn would."""

from hypothesis import given, settings
from hypothesis import strategies as st

from rules.literals import regex_keys
from rules.matchers import parse_matcher
from rules.rule import Rule
from rules.ruleset import RuleSet

VALUES = ["", "a", "ab", "abc", "b", "db-1", "db-2", "web", "x.y"]
REGEXES = [
    "(?:a|d)b(c|-1)",
    "ab+",
    "(a|w)(b|e)b?",
    "a|b",
    "ab.*",
    "db-.*|web",
    "(?:a|ab)",
    "a.*c|b",
    ".*",
    "x\\.y",
    "ab?c",
    "(a|b)c?",
    "[ab]+",
    "(?i)AB",
    "d.+",
]


def test_regex_analysis():
    assert regex_keys("a|b|c") == ("exact", {"a", "b", "c"})
    assert regex_keys("(?:db-1|db-2)") == ("exact", {"db-1", "db-2"})
    assert regex_keys("db-.*|web") == ("prefix", {"db-", "web"})
    assert regex_keys("abc*") == ("prefix", {"ab"})
    assert regex_keys("x\\.y") == ("exact", {"x.y"})
    assert regex_keys(".*error.*") is None
    assert regex_keys("(?:Kube|Node)Pod(Down|Slow)") == (
        "exact",
        {"KubePodDown", "KubePodSlow", "NodePodDown", "NodePodSlow"},
    )
    assert regex_keys("(a|b)c?") == ("prefix", {"a", "b"})
    assert regex_keys("(?i)ab") is None
    assert regex_keys("[ab]+") is None


matcher = st.builds(
    lambda name, op, v, rx: parse_matcher(f'{name}{op}"{rx if "~" in op else v}"'),
    st.sampled_from(["alertname", "service", "team", "ci.tier"]),
    st.sampled_from(["=", "!=", "=~", "!~"]),
    st.sampled_from(VALUES),
    st.sampled_from(REGEXES),
)
rule = st.builds(
    lambda i, ms, cont, team: Rule(
        name=f"r{i}",
        matchers=tuple(ms),
        continue_=cont,
        set_labels={}
        if team is None
        else {"team": __import__("rules.templates").templates.Template(team)},
    ),
    st.integers(0, 10**6),
    st.lists(matcher, max_size=3),
    st.booleans(),
    st.sampled_from([None, "a", "b", "web"]),
)
labels = st.dictionaries(
    st.sampled_from(["alertname", "service", "team"]), st.sampled_from(VALUES[1:])
)


@settings(max_examples=300, deadline=None)
@given(st.lists(rule, max_size=12), labels, st.sampled_from([None, *VALUES]))
def test_indexed_evaluation_equals_naive_evaluation(rules, alert_labels, tier):
    rules = [
        Rule(**{**{f: getattr(r, f) for f in Rule.__slots__}, "name": f"r{i}"})
        for i, r in enumerate(rules)
    ]
    rs = RuleSet(rules)

    def ci_attrs(ci):
        return {"tier": tier}

    assert rs.evaluate(alert_labels, {}, "ci", ci_attrs).matched == rs.evaluate_naive(
        alert_labels, "ci", ci_attrs
    )
    assert rs.evaluate(alert_labels).matched == rs.evaluate_naive(alert_labels)
