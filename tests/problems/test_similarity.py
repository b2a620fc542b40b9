"""The similarity behind problem clustering, on hand-made incidents: what counts as the
same failure pattern, and which CIs may share a problem."""

from dataclasses import dataclass, field

from correlation.kinds import AlertKinds
from correlation.problems import ClusterSettings, ProblemClusterer, build_profile
from daemon.cli import check_config_errors


@dataclass
class M:
    labels: dict
    ci: str | None
    annotations: dict = field(default_factory=dict)


@dataclass
class Inc:
    id: str
    root_cause: str | None
    alerts: dict
    group_key: str = ""
    opened_at: float = 0.0
    resolved_at: float | None = 60.0


def incident(iid: str, root: str, *alerts: tuple[str, str, dict]) -> Inc:
    members = {
        f"{iid}-{n}": M({"alertname": name, **labels}, ci, {"summary": f"{name} on {ci}"})
        for n, (name, ci, labels) in enumerate(alerts)
    }
    return Inc(iid, root, members)


TYPES = {"a-1": "host", "a-2": "host", "b-1": "host", "pay": "service", "pay-db": "database"}


def profile(inc: Inc):
    return build_profile(inc, TYPES.get, AlertKinds.build().weight)


def test_instance_specific_values_are_masked_so_one_pattern_on_two_hosts_looks_the_same():
    a = profile(
        incident(
            "1",
            "a-1",
            (
                "NodeFilesystemAlmostOutOfSpace",
                "a-1",
                {"node": "a-1", "instance": "10.0.0.1:9100", "mountpoint": "/var"},
            ),
        )
    )
    b = profile(
        incident(
            "2",
            "a-2",
            (
                "NodeFilesystemAlmostOutOfSpace",
                "a-2",
                {"node": "a-2", "instance": "10.0.0.2:9100", "mountpoint": "/var"},
            ),
        )
    )
    assert a.tokens == b.tokens
    assert a.signature == b.signature == "host:NodeFilesystemAlmostOutOfSpace"


def test_the_failure_mode_on_the_root_ci_outweighs_the_symptoms_it_spread():
    c = ProblemClusterer()
    down1 = profile(
        incident("1", "pay-db", ("MysqlDown", "pay-db", {}), ("HighErrorRate", "pay", {}))
    )
    down2 = profile(
        incident("2", "pay-db", ("MysqlDown", "pay-db", {}), ("HighLatencyP99", "pay", {}))
    )
    slow = profile(
        incident("3", "pay-db", ("MysqlSlowQueries", "pay-db", {}), ("HighErrorRate", "pay", {}))
    )
    for p in (down1, down2, slow):
        c.idf.add(p)
    assert c.similarity(down1, down2) > 0.8
    assert c.similarity(down1, slow) < 0.3


def test_a_resource_alert_that_happens_to_fire_says_little_about_the_failure_mode():
    c = ProblemClusterer()
    slow1 = profile(
        incident("1", "pay", ("HighLatencyP99", "pay", {}), ("CPUThrottlingHigh", "pay", {}))
    )
    slow2 = profile(
        incident("2", "pay", ("HighLatencyP99", "pay", {}), ("HighErrorRate", "pay", {}))
    )
    crash = profile(
        incident("3", "pay", ("KubePodCrashLooping", "pay", {}), ("CPUThrottlingHigh", "pay", {}))
    )
    for p in (slow1, slow2, crash):
        c.idf.add(p)
    assert c.similarity(slow1, slow2) > c.settings.same_ci_threshold
    assert c.similarity(slow1, crash) < c.settings.same_ci_threshold


def test_only_cis_of_one_role_are_compared_and_only_at_the_strict_threshold():
    roles = {"a-1": frozenset({"a-2"}), "a-2": frozenset({"a-1"})}
    c = ProblemClusterer(ClusterSettings(), role_peers=lambda x: roles.get(x, frozenset()))
    a1 = profile(incident("1", "a-1", ("NodeDown", "a-1", {"node": "a-1"})))
    a2 = profile(incident("2", "a-2", ("NodeDown", "a-2", {"node": "a-2"})))
    b1 = profile(incident("3", "b-1", ("NodeDown", "b-1", {"node": "b-1"})))
    assert c._comparable(a1, a2) == (True, c.settings.cross_ci_threshold)
    assert c._comparable(a1, b1)[0] is False
    c.add_candidate(a1)
    assert c.recurrence(a2) is not None
    assert c.recurrence(b1) is None


def test_check_config_points_at_a_bad_problems_setting(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("problems:\n  min_incidents: 0\n  cross_ci: maybe\n  colour: blue\n")
    errors = check_config_errors(str(path))
    assert f"{path}:2: problems.min_incidents must be an integer >= 1" in errors
    assert f"{path}:3: problems.cross_ci must be true or false" in errors
    assert f"{path}:4: unknown key problems.colour" in errors
