"""The line-tracking YAML loader: PyYAML's values, with lines, and clear errors."""

from __future__ import annotations

import datetime
import gc
import json
import os
import weakref

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon import heap
from daemon.yamlsrc import LineDict, LineList, SourceError, line_of, load_yaml, load_yaml_text

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DOC = """\
base: &b {x: 1, y: [a, b]}
one:
  <<: *b
  y: 2
same: *b
two:
  <<: [*b, {z: 1, x: 9}]
scalars: [1, 2.5, true, null, "3", 2020-01-01, 0x10, ~]
"""


def test_values_equal_pyyamls_safe_load_and_carry_lines():
    got = load_yaml_text(DOC)
    assert got == yaml.safe_load(DOC)
    assert isinstance(got, LineDict) and isinstance(got["scalars"], LineList)
    assert got["scalars"][5] == datetime.date(2020, 1, 1) and got["scalars"][6] == 16
    assert line_of(got, "two") == 6 and line_of(got["one"], "y") == 4
    assert got["scalars"].item_lines == [8] * 8
    # an alias is the same value, as with PyYAML
    assert got["same"] is got["base"]


def test_merge_keys_are_overridden_by_the_mappings_own_keys():
    got = load_yaml_text(DOC)
    assert got["one"] == {"x": 1, "y": 2}
    assert got["two"] == {"x": 1, "y": ["a", "b"], "z": 1}  # the first merged map wins


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a: 1\na: 2\n", 2, "duplicate key 'a'"),
        ("m:\n  <<: {a: 1}\n  b: 1\n  b: 2\n", 4, "duplicate key 'b'"),
        ("x: !foo 1\n", 1, "could not determine a constructor for the tag '!foo'"),
        ("? [a]\n: 1\n", 1, "a mapping key must be a scalar"),
        ("a: [1\n", 2, "did not find expected ',' or ']'"),
        ("a: 1\n---\nb: 2\n", 2, "but found another document"),
        ("a: 1\nwhen: 2026-02-30\n", 2, "'2026-02-30' is not a valid timestamp: day is out of range"),
        ("- [2026-13-01]\n", 1, "'2026-13-01' is not a valid timestamp: month must be in 1..12"),
        ("a: 1\nb:\n  c: " + "[" * 2000 + "]" * 2000 + "\n", 3, "values nested too deeply"),
        ("a: &x [*x, " + "{a: " * 2000 + "1" + "}" * 2000 + "]\n", 1, "values nested too deeply"),
        ("a: 1\nb: 2\nx: a\x00b\n", 3, "unacceptable character #x0000: control characters are not allowed"),
    ],
)
def test_errors_name_file_and_line(text, line, message):
    with pytest.raises(SourceError) as err:
        load_yaml_text(text, "f.yaml")
    assert err.value.line == line and message in str(err.value)
    assert str(err.value).startswith(f"f.yaml:{line}: invalid YAML") and "\n" not in str(err.value)


@pytest.mark.parametrize(("nesting", "line"), [
    ("x: " + "[" * 50_000 + "]" * 50_000, 2),
    ("x: " + "{a: " * 50_000 + "1" + "}" * 50_000, 2),
    ("x:\n  " + "- " * 50_000 + "leaf", 3),
])
def test_values_nested_tens_of_thousands_deep_are_an_error_not_a_crash(tmp_path, nesting, line):
    # libyaml's node builder overflows the C stack some 25,000 levels deep: a child
    # process, so that a crash fails this test instead of ending the run
    import subprocess
    import sys

    (tmp_path / "config.yaml").write_text("cmdb: []\n" + nesting + "\n")
    got = subprocess.run([sys.executable, "-m", "daemon.cli", "check-config", "--config", "config.yaml"],
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True)
    assert (got.returncode, got.stdout + got.stderr) == (1, f"config.yaml:{line}: invalid YAML: values nested too deeply\n")


def test_a_file_that_is_not_utf8_is_an_error_at_its_line(tmp_path):
    path = tmp_path / "cmdb.yaml"
    path.write_bytes(b"cis:\n  - id: caf\xe9\n")  # a Latin-1 export
    with pytest.raises(SourceError) as err:
        load_yaml(str(path))
    assert str(err.value) == f"{path}:2: not UTF-8 text (byte 0xe9)"


def test_empty_documents_are_none():
    assert load_yaml_text("") is None
    assert load_yaml_text("# only a comment\n") is None


def test_loading_leaves_no_garbage_cycles_and_restores_the_collector():
    gc.collect()
    assert gc.isenabled()
    load_yaml_text(DOC)
    assert gc.isenabled()
    assert gc.collect() == 0  # everything built was freed by reference counting


def test_paused_nests_and_restores_the_collectors_state():
    with heap.paused():
        with heap.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with heap.paused():
            pass
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()


def test_a_kept_build_is_out_of_later_collector_passes_until_resettled():
    class Node:
        def __init__(self):
            self.me = self  # a reference cycle, as in a networkx graph

    try:
        with heap.paused(keep=True):
            kept = Node()
        assert gc.isenabled()
        assert not any(o is kept for o in gc.get_objects())  # frozen: no pass scans it
        ref = weakref.ref(kept)
        del kept
        gc.collect()
        assert ref() is not None  # dropped, but only resettle() lets the collector see it
        heap.resettle()
        assert ref() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(700, 10, 10)


# -- JSON on one line: read by the json module, exactly as YAML reads it ---------


def _shape(value):
    """A value with everything the loader records: types, lines, texts."""
    if isinstance(value, LineDict):
        return ("map", value.line, [(_shape(k), _shape(v), value.line_of(k)) for k, v in value.items()],
                value.texts)
    if isinstance(value, LineList):
        return ("seq", value.line, [_shape(v) for v in value], value.item_lines)
    return (type(value).__name__, repr(value))


def _as_json_and_as_yaml(text):
    """`text` read as it is, and read with a comment line added (which keeps it from
    being read as one-line JSON): the shapes, or the errors."""
    out = []
    for t in (text, text + "\n# not one line\n"):
        try:
            out.append(_shape(load_yaml_text(t, "f.yaml")))
        except SourceError as exc:
            out.append(str(exc))
    return out


_JSON_SCALARS = (st.none() | st.booleans() | st.integers(-10**30, 10**30)
                 | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
_JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_JSON_VALUES.filter(lambda v: isinstance(v, dict | list)), st.booleans())
def test_one_line_json_reads_as_yaml_does(value, ascii_only):
    text = json.dumps(value, ensure_ascii=ascii_only)
    as_json, as_yaml = _as_json_and_as_yaml(text)
    assert as_json == as_yaml


@pytest.mark.parametrize("text", [
    '{"a": 1e5, "b": 1E+5, "c": 1.0e+5, "d": 1.0e5, "e": -0, "f": 1.10, "g": 012}',
    '{"a": 1.0e+400, "b": NaN, "c": Infinity, "d": -Infinity, "e": [1e5, 2.50, true, null]}',
    '{"t": true, "f": false, "n": null, "s": "true", "x": "2020-01-01", "y": 2020}',
    '{"a": 1, "a": 2}',  # YAML: a duplicate key
    '{"%s": 1}' % ("k" * 1100),  # YAML: a key too long
    '{"%s": 1}' % ("k" * 149), '{"%s": 1}' % ("\\u00e9" * 170),
    '{"a"%s: 1}' % (" " * 1100), '{"a": "%s"}' % (" " * 70),
    '{"a": "\\ud83d\\ude00"}',  # YAML refuses surrogate escapes
    '{"a": "x\u2028y"}', '{"a": "x\u0085y"}', '{"a": "\u00e9\U0001f600"}', '{"a": "\x7f"}',
    '{"a": "\\u0000\\b\\f\\n\\r\\t\\/\\\\\\""}',
    '{"a":1,"b":[1,2,{"c":"d"}]}',
    '{"a": 1,}', '{"a": 1} {"b": 2}', '{"a": 1} # comment', '[1, 2]\n\n',
    '{"<<": {"a": 1}, "=": 2}',
    "[" * 99 + "]" * 99, "[" * 101 + "]" * 101, "[" * 700 + "]" * 700,
    '{"a": ' * 120 + "1" + "}" * 120,
    '{"a": ' * 900 + "1" + "}" * 900,
])
def test_one_line_json_edge_cases_read_as_yaml_does(text):
    as_json, as_yaml = _as_json_and_as_yaml(text)
    assert as_json == as_yaml
