"""The line-tracking YAML loader: PyYAML's values, with lines, and clear errors."""

from __future__ import annotations

import datetime
import gc
import weakref

import pytest
import yaml

from daemon import heap
from daemon.yamlsrc import LineDict, LineList, SourceError, line_of, load_yaml, load_yaml_text

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
    ],
)
def test_errors_name_file_and_line(text, line, message):
    with pytest.raises(SourceError) as err:
        load_yaml_text(text, "f.yaml")
    assert err.value.line == line and message in str(err.value)
    assert str(err.value).startswith(f"f.yaml:{line}: invalid YAML")


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
