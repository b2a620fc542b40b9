"""The similarity behind problem clustering, on hand-made incidents: what counts as the
same failure pattern, and which CIs may share a problem."""

import math
import random
from dataclasses import dataclass, field

from correlation.kinds import AlertKinds
from correlation.problems import (
    PROFILE_ALERTS,
    ClusterSettings,
    Idf,
    ProblemClusterer,
    Profile,
    build_profile,
)
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


class Classes:
    """`Roles` by hand: the class of each CI, each class interchangeable with itself only."""

    def __init__(self, classes: dict[str, str]) -> None:
        self.classes = dict(classes)
        self.version = 0

    def key(self, ci):
        return self.classes.get(ci)

    def peers(self, key):
        return frozenset({key})


def test_roles_by_class_follow_the_classes_as_they_change():
    """CIs are compared across by class; when the classes change (a reloaded CMDB, its
    `version` moved), the candidates and problems already known are found by the new ones."""
    roles = Classes({"a-1": "A", "a-2": "A", "b-1": "B"})
    c = ProblemClusterer(ClusterSettings(), roles=roles)
    a1 = profile(incident("1", "a-1", ("NodeDown", "a-1", {"node": "a-1"})))
    a2 = profile(incident("2", "a-2", ("NodeDown", "a-2", {"node": "a-2"})))
    b1 = profile(incident("3", "b-1", ("NodeDown", "b-1", {"node": "b-1"})))
    c.add_candidate(a1)
    assert c._comparable(a2, a1) == (True, c.settings.cross_ci_threshold)
    assert c.recurrence(a2) is not None and c.recurrence(b1) is None
    roles.classes["a-1"], roles.version = "B", 1  # a-1 now alike b-1, and no longer a-2
    assert c.recurrence(b1) is not None and c.recurrence(a2) is None
    c.drop_candidate(a1.incident_id)
    assert c.recurrence(b1) is None
    c.add_cluster("PRB-1", [[a1]])
    assert c.best_cluster(b1).cluster_id == "PRB-1" and c.best_cluster(a2) is None
    roles.classes["a-1"], roles.version = "A", 2
    assert c.best_cluster(a2).cluster_id == "PRB-1" and c.best_cluster(b1) is None


def test_check_config_points_at_a_bad_problems_setting(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("problems:\n  min_incidents: 0\n  cross_ci: maybe\n  colour: blue\n")
    errors = check_config_errors(str(path))
    assert f"{path}:2: problems.min_incidents must be an integer >= 1" in errors
    assert f"{path}:3: problems.cross_ci must be true or false" in errors
    assert f"{path}:4: unknown key problems.colour" in errors


def _bag(rnd, iid: str, root: str):
    tokens = {f"t{rnd.randrange(30)}": rnd.choice((0.25, 0.5, 3.0)) for _ in range(rnd.randint(2, 8))}
    return Profile(incident_id=iid, root=root, ci_type="host", root_names=(), tokens=tokens,
                   opened_at=0.0, resolved_at=60.0)


def test_idf_weights_hold_between_snapshots_and_then_follow_the_counts():
    rnd = random.Random(5)
    idf = Idf(refresh=0.1)
    docs = (_bag(rnd, str(i), "a-1") for i in range(1000))
    for _ in range(100):
        idf.add(next(docs))
    version = idf.version
    while idf.version == version:
        idf.add(next(docs))
    n = idf.docs  # a snapshot was just taken at n documents
    held = {t: idf.weight(t) for t in idf.df}
    version = idf.version
    while idf.docs + 1 - n < 0.1 * n:  # under 10 % more documents: the snapshot holds
        idf.add(next(docs))
        assert idf.version == version and {t: idf.weight(t) for t in held} == held
    idf.add(next(docs))  # 10 %: a new snapshot, scikit-learn's smoothed idf
    assert idf.version == version + 1
    for t, df in idf.df.items():
        assert math.isclose(idf.weight(t), math.log((1 + idf.docs) / (1 + df)) + 1)
    assert math.isclose(idf.weight("never-seen"), math.log(1 + idf.docs) + 1)


ROLE = {"a-1": frozenset({"a-2"}), "a-2": frozenset({"a-1"}), "b-1": frozenset()}


def test_average_linkage_kept_up_incrementally_equals_the_mean_of_the_similarities():
    """A part grows by appending and its window slides; the linkage worked out from
    the previous one must equal the plain mean over the members, including across
    an IDF snapshot and with members on another CI of the role."""
    rnd = random.Random(9)
    c = ProblemClusterer(ClusterSettings(max_members=5), role_peers=ROLE.get)
    part = []
    for i in range(40):
        p = _bag(rnd, f"m{i}", rnd.choice(("a-1", "a-2")))
        c.idf.add(p)
        part.append(p)
        members = part[-5:]
        probe = _bag(rnd, f"probe{i}", "a-1")
        got = c._linkage(probe, members)
        sims = [c.similarity(probe, m) for m in members]
        margins = [s - (0.4 if m.root == "a-1" else 0.9) for s, m in zip(sims, members, strict=True)]
        assert math.isclose(got[0], sum(sims) / len(sims), abs_tol=1e-9)
        assert math.isclose(got[1], sum(margins) / len(margins), abs_tol=1e-9)
    assert c._linkage(_bag(rnd, "x", "b-1"), part[-5:]) is None  # another role: not comparable


def _node(iid: str, *names: str) -> Profile:
    labels = {"node": "a-1", "instance": "10.0.0.1:9100", "severity": "critical"}
    return profile(incident(iid, "a-1", *((n, "a-1", labels) for n in names)))


def test_a_recurrence_that_lost_some_of_its_alerts_still_joins_its_problem():
    """Alerts get lost: a node-down that arrives as NodeDown alone is the node-down problem
    whose earlier incidents themselves each lacked one alert or another."""
    c = ProblemClusterer()
    for i, names in enumerate([("NodeFilesystemAlmostOutOfSpace",), ("NodeMemoryHighUtilization",),
                               ("CPUThrottlingHigh",), ("NodeFilesystemSpaceFillingUp",)]):
        c.idf.add(_node(f"other-{i}", *names))
    down = [_node("d1", "KubeNodeNotReady", "KubeNodeUnreachable"),
            _node("d2", "KubeNodeNotReady", "KubeNodeUnreachable", "NodeDown")]
    c.add_cluster("PRB-1", [down])
    lost = _node("d3", "NodeDown")
    c.idf.add(lost)
    match = c.best_cluster(lost)
    assert match is not None and match.cluster_id == "PRB-1"
    # an alert the problem does not commonly show is not forgiven as lost
    assert c.best_cluster(_node("d4", "NodeMemoryHighUtilization")) is None
    assert c.best_cluster(_node("d5", "NodeDown", "NodeMemoryHighUtilization")) is None


def test_an_alert_the_problem_shows_only_now_and_then_is_not_taken_for_its_failure_mode():
    """A problem of error bursts, one of which also had latency: a latency-only incident
    is another failure mode, not an error burst that lost its errors."""
    c = ProblemClusterer()
    for i, names in enumerate([("CPUThrottlingHigh",), ("KubePodCrashLooping",), ("TargetDown",)]):
        c.idf.add(_node(f"other-{i}", *names))
    errs = [_node("e1", "HighErrorRate"), _node("e2", "HighErrorRate"),
            _node("e3", "HighErrorRate", "HighLatencyP99")]
    c.add_cluster("PRB-1", [errs])
    slow = _node("s1", "HighLatencyP99")
    c.idf.add(slow)
    assert c.best_cluster(slow) is None


def test_an_incident_of_thousands_of_alerts_alike_is_profiled_by_its_first_ones_on_the_root():
    pods = [("KubePodCrashLooping", "pay", {"pod": f"pay-{i}", "reason": "OOMKilled" if i < 60 else "Error"})
            for i in range(3000)]
    many = profile(incident("1", "pay", *pods, ("HighErrorRate", "web", {})))
    first = profile(incident("2", "pay", *pods[:PROFILE_ALERTS], ("HighErrorRate", "web", {})))
    assert many.tokens == first.tokens  # what the 51st and later alerts on the root say is not read
    assert "l:reason=OOMKilled" in many.tokens and "l:reason=Error" not in many.tokens
    assert many.tokens["s:HighErrorRate"] > 0  # every alert elsewhere still names how it spread


def test_an_incident_profiled_as_it_gains_alerts_one_by_one_is_profiled_as_afresh():
    """`build_profile` with `scans` follows an incident through each alert it gains, and
    starts over when its root moves or an alert leaves: the same profile, to the
    order of its tokens, as profiling every member again."""
    from daemon.incidents import Incident, Member

    rnd = random.Random(5)
    kinds = AlertKinds.build().weight
    inc = Incident(id="INC-1", seq=1, state="open", opened_at=0.0, updated_at=0.0, root_cause="pay")
    scans: dict = {}
    for i in range(400):
        r = rnd.random()
        if r < 0.03:
            inc.root_cause = rnd.choice(["pay", "pay-db", "a-1"])
        elif r < 0.06 and inc.alerts:
            del inc.alerts[rnd.choice(sorted(inc.alerts))]
            inc.revision += 1
            inc.appended = None
        else:
            name = rnd.choice(["KubePodCrashLooping", "HighErrorRate", "NodeDown", "CPUThrottlingHigh", "DiskFull"])
            ci = rnd.choice(["pay", "pay", "pay-db", "a-1", "web", None])
            m = Member(fingerprint=f"f{i}", labels={"alertname": name, "pod": f"p-{i % 70}"},
                       annotations={"summary": f"{name} on {ci}"}, status="firing", starts_at=0.0, ends_at=None,
                       first_at=0.0, last_at=0.0, since=0.0, ci=ci)
            inc.alerts[m.fingerprint] = m
            inc.revision += 1
            inc.appended = (inc.revision, m)
        kept = build_profile(inc, TYPES.get, kinds, scans)
        fresh = build_profile(inc, TYPES.get, kinds)
        assert (kept.root, kept.root_names, list(kept.tokens.items())) == \
            (fresh.root, fresh.root_names, list(fresh.tokens.items()))
    assert scans["INC-1"].incident is inc and len(inc.alerts) > PROFILE_ALERTS
