"""Matchers behave as Alertmanager's (pkg/labels)."""

import pytest
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


def test_dot_does_not_match_newline_as_in_go():
    assert not parse_matcher('msg=~"a.b"').matches({"msg": "a\nb"})


def test_leading_case_insensitive_flag_is_accepted():
    m = parse_matcher('alertname=~"(?i)diskfull|nodedown"')
    assert m.matches({"alertname": "DiskFull"}) and m.matches({"alertname": "NODEDOWN"})


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
    import re

    for op in ("=~", "!~"):
        m = parse_matcher(f'job{op}"{rx}"' if "\\" not in rx else f"job{op}{rx}")
        assert m._values is not None, "read as a set of strings, not compiled"
        compiled = re.compile(f"(?:{rx})")
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
    import re

    from rules.literals import regex_keys

    keys = regex_keys(rx)
    if keys is None or keys[0] != "exact":
        return
    compiled = re.compile(f"(?:{rx})")  # never a regex Alertmanager would reject
    for value in [*keys[1], *probes]:
        assert (compiled.fullmatch(value) is not None) is (value in keys[1]), (rx, value)
