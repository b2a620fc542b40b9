"""Matchers behave as Alertmanager's (pkg/labels)."""

import pytest
import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.matchers import MatcherError, parse_matcher, parse_matchers


def test_regex_is_anchored_at_both_ends():
    m = parse_matcher('job=~"web"')
    assert m.matches({"job": "web"})
    assert not m.matches({"job": "webserver"})
    assert not m.matches({"job": "myweb"})


def test_alternation_is_anchored_as_a_whole():
    m = parse_matcher('job=~"a|b"')
    assert m.matches({"job": "a"}) and m.matches({"job": "b"})
    assert not m.matches({"job": "ab"})


def test_empty_value_selects_alerts_without_the_label():
    assert parse_matcher('team=""').matches({})
    assert not parse_matcher('team=""').matches({"team": "x"})
    assert parse_matcher('team!=""').matches({"team": "x"})
    assert not parse_matcher('team!=""').matches({})


def test_missing_label_is_the_empty_string_for_regexes():
    assert parse_matcher('team=~".*"').matches({})
    assert not parse_matcher('team=~".+"').matches({})
    assert parse_matcher('team!~".+"').matches({})


def test_negative_matchers():
    assert parse_matcher('env!="prod"').matches({"env": "dev"})
    assert not parse_matcher('env!~"prod|staging"').matches({"env": "staging"})


def test_quoted_values_unescape_quotes_backslashes_and_newlines():
    assert parse_matcher(r'msg="say \"hi\""').value == 'say "hi"'
    assert parse_matcher(r'path="C:\\temp"').value == "C:\\temp"
    assert parse_matcher(r'x="a\nb"').value == "a\nb"


def test_other_backslashes_stay_for_the_regex_as_in_alertmanager():
    # `\d` and `\.` are the regex's escapes, not the quoting's: dropping the backslash
    # would make `host-\d+` the regex `host-d+`, which no host name matches
    m = parse_matcher(r'instance=~"host-\d+\.prod"')
    assert m.value == r"host-\d+\.prod"
    assert m.matches({"instance": "host-12.prod"}) and not m.matches({"instance": "host-12xprod"})
    assert parse_matcher(r'path="C:\\temp\x"').value == "C:\\temp\\x"
    assert parse_matcher(r'path="C:\temp"').value == "C:\\temp"  # no tab: `\t` is no escape there
    assert parse_matcher(str(m)) == m


def test_dot_does_not_match_newline_as_in_go():
    assert not parse_matcher('msg=~"a.b"').matches({"msg": "a\nb"})


def test_leading_case_insensitive_flag_is_accepted():
    m = parse_matcher('alertname=~"(?i)diskfull|nodedown"')
    assert m.matches({"alertname": "DiskFull"}) and m.matches({"alertname": "NODEDOWN"})


def test_regexes_are_go_syntax_as_in_alertmanager():
    # a flag in the middle, as Go allows; no look-around or back-references, as Go refuses
    m = parse_matcher('alertname=~"Disk(?i)full"')
    assert m.matches({"alertname": "DiskFULL"}) and not m.matches({"alertname": "diskfull"})
    for text in ('job=~"(?=api).*"', 'job=~"(a)\\\\1"', 'job=~"(?<!x)y"'):
        with pytest.raises(MatcherError, match="invalid regex in job=~"):
            parse_matcher(text)


def test_a_regex_that_backtracks_exponentially_elsewhere_matches_in_linear_time():
    # in a backtracking engine `(a+)+b` against 30 a's takes minutes; RE2 reads each
    # character once, so a silence or rule holding it cannot stall the pipeline
    m = parse_matcher('rl=~"(a+)+b"')
    assert not m.matches({"rl": "a" * 100_000})
    assert m.matches({"rl": "a" * 100_000 + "b"})


def test_a_list_item_may_be_a_selector_in_braces_as_in_alertmanager():
    ms = parse_matchers(['{service="web"}', 'env!="dev"', '{job=~"api|worker", team="shop"}'])
    assert [str(m) for m in ms] == ['service="web"', 'env!="dev"', 'job=~"api|worker"', 'team="shop"']


def test_selector_with_commas_inside_quotes():
    ms = parse_matchers('{instance=~"a,b|c", job="x"}')
    assert [(m.name, m.op, m.value) for m in ms] == [("instance", "=~", "a,b|c"), ("job", "=", "x")]


@pytest.mark.parametrize("text", ['job=~"("', '9job="x"', 'job=="x"', 'job="x'])
def test_invalid_matchers_are_rejected(text):
    with pytest.raises(MatcherError):
        parse_matcher(text)


LITERAL_REGEXES = [
    "a|b|c", "", "a|", "(?:db-1|db-2)", "api-(exporter|metrics)", "x\\.y", "(a|b)(c|)",
    "(?:Kube|Node)Pod(Down|Slow)", "a\\|b", "()", "a(b|c)d|e",
]
PROBES = [
    "", "a", "b", "c", "ab", "db-1", "db-2", "db-3", "api-exporter", "api-metrics", "api-",
    "x.y", "xzy", "ac", "bc", "a", "b", "KubePodDown", "NodePodSlow", "KubePod", "a|b",
    "abd", "acd", "e", "ad", "a\n", "A",
]


@pytest.mark.parametrize("rx", LITERAL_REGEXES)
def test_regex_of_literals_is_a_set_and_matches_as_the_regex_does(rx):
    for op in ("=~", "!~"):
        m = parse_matcher(f'job{op}"{rx}"' if "\\" not in rx else f"job{op}{rx}")
        assert m._values is not None, "read as a set of strings, not compiled"
        compiled = re2.compile(f"(?:{rx})")  # RE2, as Alertmanager
        for value in PROBES:
            hit = compiled.fullmatch(value) is not None
            assert m.matches({"job": value}) is (hit if op == "=~" else not hit), (rx, op, value)


def test_regex_that_is_not_a_list_of_literals_is_compiled():
    m = parse_matcher('job=~"api-.*"')
    assert m._values is None and m.matches({"job": "api-x"}) and not m.matches({"job": "web"})


@settings(max_examples=2000, deadline=None)
@given(
    st.text(alphabet="ab-|()\\.?*+[]{}:", max_size=10),
    st.lists(st.text(alphabet="ab-|().:", max_size=5), max_size=8),
)
def test_a_regex_read_as_literals_is_valid_and_matches_exactly_those(rx, probes):
    from rules.literals import regex_keys

    keys = regex_keys(rx)
    if keys is None or keys[0] != "exact":
        return
    compiled = re2.compile(f"(?:{rx})")  # never a regex Alertmanager would reject
    for value in [*keys[1], *probes]:
        assert (compiled.fullmatch(value) is not None) is (value in keys[1]), (rx, value)
