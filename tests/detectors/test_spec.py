import re

import pytest

from detectors.spec import DEFAULT_SPEC, MAX_WINDOW, parse_detectors


def test_full_spec_is_parsed():
    [spec] = parse_detectors([{
        "name": "cpu", "match": ['__name__="node_cpu"', 'env=~"prod|stage"'],
        "promql": "rate(x[5m])", "model": {"name": "hbos", "params": {"n_bins": 20}},
        "sensitivity": 0.7, "warmup": 100, "stale_after": "30m",
    }], "c.yaml")
    assert spec.model == "hbos" and spec.params == {"n_bins": 20}
    assert spec.stale_after == 1800.0 and spec.warmup == 100 and spec.promql == "rate(x[5m])"
    assert [m.name for m in spec.match] == ["__name__", "env"]


def test_missing_list_gives_no_detectors_and_defaults_apply():
    assert parse_detectors(None, "c.yaml") == []
    [spec] = parse_detectors([{"name": "x"}], "c.yaml")
    assert spec.model == DEFAULT_SPEC.model and spec.sensitivity == DEFAULT_SPEC.sensitivity


@pytest.mark.parametrize(("item", "field"), [
    ({"sensitivity": 0.5}, "detectors[0].name"),
    ({"name": "x", "sensitivity": 2}, "detectors[0].sensitivity"),
    ({"name": "x", "model": "magic"}, "detectors[0].model"),
    ({"name": "x", "warmup": "long"}, "detectors[0].warmup"),
    ({"name": "x", "stale_after": "soon"}, "detectors[0].stale_after"),
    ({"name": "x", "match": ['env=~"("']}, "detectors[0].match"),
    ({"name": "x", "colour": "red"}, "detectors[0].colour"),
    ({"name": "x", "params": [1]}, "detectors[0].params"),
    ({"name": "x", "window": 99}, "detectors[0].window"),
    ({"name": "x", "window": MAX_WINDOW + 1}, "detectors[0].window"),
])
def test_bad_field_is_named_in_the_error(item, field):
    with pytest.raises(ValueError, match=re.escape(f"c.yaml: {field}")):
        parse_detectors([item], "c.yaml")


def test_duplicate_names_are_rejected():
    with pytest.raises(ValueError, match=r"detectors\[1\]\.name: duplicate"):
        parse_detectors([{"name": "x"}, {"name": "x"}], "c.yaml")


def test_the_window_is_bounded_and_check_config_says_so_on_its_line(tmp_path):
    from daemon.cli import check_config_errors

    [spec] = parse_detectors([{"name": "x", "window": MAX_WINDOW}], "c.yaml")
    assert spec.window == MAX_WINDOW
    path = tmp_path / "c.yaml"
    path.write_text("detectors:\n  - name: w\n    window: 2000000000\n")
    assert check_config_errors(str(path)) == [
        f"{path}:3: detectors[0].window: at most {MAX_WINDOW} (larger ones cost too much memory"
        " and time per series), got 2000000000"]
