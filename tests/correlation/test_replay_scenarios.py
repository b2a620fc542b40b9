"""Replays of small event files through `incidentd replay`'s own code, with the exact
incidents expected: one per fault, the right root cause, the impact."""

import json

import pytest

from daemon import plugins  # noqa: F401 - result sections (problems, anomalies)
from daemon.config import load_config
from daemon.replay import run_replay

CMDB = """
cis:
  - {id: shop, type: business_service, criticality: critical, match: {slo: shop}, depends_on: [web]}
  - {id: web, criticality: high, match: {service: web}, depends_on: [cart, orders, search, host-a]}
  - {id: cart, match: {service: cart}, depends_on: [db, host-a]}
  - {id: orders, match: {service: orders}, depends_on: [db, host-b]}
  - {id: search, match: {service: search}, depends_on: [index, host-b]}
  - {id: db, type: database, match: {service: db}, depends_on: [host-c]}
  - {id: index, type: database, match: {service: index}, depends_on: [host-c]}
  - {id: host-a, type: host, match: {instance: host-a}, depends_on: [net]}
  - {id: host-b, type: host, match: {instance: host-b}, depends_on: [net]}
  - {id: host-c, type: host, match: {instance: host-c}, depends_on: [net]}
  - {id: net, type: network, match: {instance: gw}}
"""

T = "2026-01-01T00:{:02d}:{:02d}Z"


def at(seconds: int) -> str:
    return T.format(seconds // 60, seconds % 60)


def alert(seconds: int, name: str, severity: str, status: str = "firing", **labels: str) -> dict:
    return {"kind": "alert", "at": at(seconds), "alert": {
        "status": status, "labels": {"alertname": name, "severity": severity, **labels},
        "annotations": {"summary": f"{name} on {labels}"}, "startsAt": at(seconds),
        "endsAt": at(seconds) if status == "resolved" else "0001-01-01T00:00:00Z"}}


def replay(tmp_path, events: list[dict], cmdb: str = CMDB) -> dict:
    (tmp_path / "cmdb.yaml").write_text(cmdb)
    (tmp_path / "config.yaml").write_text("data_dir: data\ncmdb: [cmdb.yaml]\n")
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    run_replay(load_config(str(tmp_path / "config.yaml")), str(tmp_path / "events.jsonl"),
               str(tmp_path / "result.json"))
    return json.loads((tmp_path / "result.json").read_text())


def names(incident: dict) -> set[str]:
    return {f"{a['labels']['alertname']}@{a['ci'] or '-'}" for a in incident["alerts"]}


def test_database_fault_is_one_incident_rooted_at_the_database(tmp_path):
    result = replay(tmp_path, [
        alert(0, "HighErrorRate", "critical", service="cart"),
        alert(20, "HighErrorRate", "critical", service="orders"),
        alert(45, "MongodbDown", "critical", service="db"),
        alert(90, "HighErrorRate", "critical", service="web"),
        alert(120, "ErrorBudgetBurn", "critical", slo="shop"),
        alert(900, "MongodbDown", "critical", "resolved", service="db"),
        alert(900, "HighErrorRate", "critical", "resolved", service="cart"),
        alert(900, "HighErrorRate", "critical", "resolved", service="orders"),
        alert(900, "HighErrorRate", "critical", "resolved", service="web"),
        alert(900, "ErrorBudgetBurn", "critical", "resolved", slo="shop"),
    ])
    [inc] = result["incidents"]
    assert names(inc) == {"HighErrorRate@cart", "HighErrorRate@orders", "MongodbDown@db",
                          "HighErrorRate@web", "ErrorBudgetBurn@shop"}
    assert inc["root_cause"] == "db"
    assert inc["root_cause_candidates"][0]["ci"] == "db"
    assert inc["impacted"][0] == "shop"  # business services first
    assert set(inc["impacted"]) == {"shop", "web", "cart", "orders"}
    assert inc["priority"] == "P1"
    assert inc["opened_at"] == at(0) and inc["resolved_at"] == at(900)
    assert "depends on db" in {a["labels"]["alertname"]: a["reason"] for a in inc["alerts"]}["ErrorBudgetBurn"]


def test_two_unrelated_faults_at_once_stay_two_incidents(tmp_path):
    result = replay(tmp_path, [
        alert(0, "MongodbDown", "critical", service="db"),
        alert(10, "NodeDown", "critical", instance="host-b"),
        alert(60, "HighErrorRate", "critical", service="cart"),
        alert(70, "HighErrorRate", "critical", service="search"),
    ])
    by_root = {inc["root_cause"]: names(inc) for inc in result["incidents"]}
    assert by_root == {"db": {"MongodbDown@db", "HighErrorRate@cart"},
                       "host-b": {"NodeDown@host-b", "HighErrorRate@search"}}


def test_shared_host_without_an_alert_of_its_own_is_the_root_cause(tmp_path):
    result = replay(tmp_path, [
        alert(0, "HighLatencyP99", "warning", service="orders"),
        alert(40, "HighLatencyP99", "warning", service="search"),
    ])
    [inc] = result["incidents"]
    assert inc["root_cause"] == "host-b"
    assert "no alert of its own" in inc["explanation"]


def test_info_noise_on_an_unrelated_ci_stays_out_of_the_fault(tmp_path):
    result = replay(tmp_path, [
        alert(0, "MongodbDown", "critical", service="db"),
        alert(30, "CPUThrottlingHigh", "info", service="search"),
        alert(60, "HighErrorRate", "critical", service="orders"),
    ])
    assert sorted(names(i) for i in result["incidents"]) == sorted(
        [{"MongodbDown@db", "HighErrorRate@orders"}, {"CPUThrottlingHigh@search"}])


def test_alert_matching_no_ci_is_still_in_exactly_one_incident(tmp_path):
    result = replay(tmp_path, [
        alert(0, "KubeJobFailed", "warning", namespace="ops", job_name="backup"),
        alert(30, "KubeJobFailed", "warning", namespace="ops", job_name="backup"),
        alert(60, "MongodbDown", "critical", service="db"),
    ])
    fps = [a["fingerprint"] for inc in result["incidents"] for a in inc["alerts"]]
    assert len(fps) == len(set(fps)) == 2
    [job] = [i for i in result["incidents"] if i["root_cause"] is None]
    assert "no CMDB CI matches its labels" in job["alerts"][0]["reason"]


@pytest.mark.parametrize("late", [600, 1500])
def test_late_alert_on_the_root_joins_while_its_ci_is_still_firing(tmp_path, late):
    result = replay(tmp_path, [
        alert(0, "NodeDown", "critical", instance="host-c"),
        alert(30, "MongodbDown", "critical", service="db"),
        alert(late, "KubeNodeNotReady", "warning", instance="host-c"),
    ])
    [inc] = result["incidents"]
    assert inc["root_cause"] == "host-c"
    assert len(inc["alerts"]) == 3


def test_an_alert_firing_again_long_after_it_resolved_goes_with_the_new_fault(tmp_path):
    # the database fails and recovers; the SLO keeps its incident open; half an hour
    # later the database's host goes down and the database alert fires again
    result = replay(tmp_path, [
        alert(0, "MongodbDown", "critical", service="db"),
        alert(30, "HighErrorRate", "critical", service="cart"),
        alert(60, "ErrorBudgetBurn", "critical", slo="shop"),
        alert(600, "MongodbDown", "critical", "resolved", service="db"),
        alert(600, "HighErrorRate", "critical", "resolved", service="cart"),
        alert(1800, "NodeDown", "critical", instance="host-c"),
        alert(1830, "MongodbDown", "critical", service="db"),
        alert(2400, "NodeDown", "critical", "resolved", instance="host-c"),
        alert(2400, "MongodbDown", "critical", "resolved", service="db"),
        alert(2700, "ErrorBudgetBurn", "critical", "resolved", slo="shop"),
    ])
    by_root = {inc["root_cause"]: names(inc) for inc in result["incidents"]}
    assert by_root == {"db": {"MongodbDown@db", "HighErrorRate@cart", "ErrorBudgetBurn@shop"},
                       "host-c": {"NodeDown@host-c", "MongodbDown@db"}}
    second = next(i for i in result["incidents"] if i["root_cause"] == "host-c")
    assert second["opened_at"] == at(1800) and second["resolved_at"] == at(2400)


def test_an_alert_firing_on_long_after_the_fault_leaves_its_incident(tmp_path):
    # the database fails for a quarter of an hour; latency on orders, which depends on it,
    # began meanwhile and goes on for most of the hour: the fault's symptoms cleared with
    # it, so the latency was something else
    result = replay(tmp_path, [
        alert(0, "MongodbDown", "critical", service="db"),
        alert(30, "HighErrorRate", "critical", service="cart"),
        alert(60, "HighLatencyP99", "warning", service="orders"),
        alert(900, "MongodbDown", "critical", "resolved", service="db"),
        alert(960, "HighErrorRate", "critical", "resolved", service="cart"),
        alert(3540, "HighLatencyP99", "warning", "resolved", service="orders"),
    ])
    fault, latency = result["incidents"]
    assert names(fault) == {"MongodbDown@db", "HighErrorRate@cart"}
    assert fault["root_cause"] == "db" and fault["impacted"] == ["cart"]
    assert (fault["opened_at"], fault["resolved_at"]) == (at(0), at(960))
    assert names(latency) == {"HighLatencyP99@orders"}
    assert (latency["opened_at"], latency["resolved_at"]) == (at(900 + 1200), at(3540))


def test_hosts_going_down_together_are_one_incident_rooted_at_their_network(tmp_path):
    # each pair looks like one host's fault plus noise; the third host shows the common cause
    result = replay(tmp_path, [
        alert(0, "NodeDown", "critical", instance="host-a"),
        alert(2, "NodeDown", "critical", instance="host-b"),
        alert(4, "NodeDown", "critical", instance="host-c"),
    ])
    [inc] = result["incidents"]
    assert names(inc) == {"NodeDown@host-a", "NodeDown@host-b", "NodeDown@host-c"}
    assert inc["root_cause"] == "net"
    assert "one fault at net explains this alert and the 2 incidents it relates to: merged" in {
        a["labels"]["instance"]: a["reason"] for a in inc["alerts"]}["host-c"]


def test_replay_gives_the_same_result_in_every_process(tmp_path):
    """Ties are broken by CI id, never by set order (which changes with PYTHONHASHSEED)."""
    import os
    import subprocess
    import sys

    events = [alert(0, "HighErrorRate", "critical", service="cart"),
              alert(20, "HighErrorRate", "critical", service="orders"),
              alert(40, "HighLatencyP99", "warning", service="search")]
    replay(tmp_path, events)
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"r{seed}.json"
        subprocess.run([sys.executable, "-m", "daemon.cli", "replay", "--config", str(tmp_path / "config.yaml"),
                        "--input", str(tmp_path / "events.jsonl"), "--output", str(out)],
                       check=True, env={**os.environ, "PYTHONHASHSEED": seed})
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_a_change_recorded_shortly_before_counts_for_its_ci_in_the_ranking(tmp_path):
    """orders alone alerts; its database and its host explain it equally well until the
    host turns out to have been drained a quarter of an hour before. On a CMDB of eleven
    CIs a change is weak evidence (one CI in eleven changing is no rarity), so orders
    itself stays first; the host moves up and the ranking says why."""
    change = {"kind": "change", "at": at(0), "ci": "host-b", "id": "CHG-7", "summary": "drain host-b",
              "end": at(120)}
    events = [alert(1000, "HighErrorRate", "warning", service="orders")]
    [without] = replay(tmp_path, events)["incidents"]
    [inc] = replay(tmp_path, [change, *events])["incidents"]
    assert [c["ci"] for c in without["root_cause_candidates"][:3]] == ["orders", "db", "host-b"]
    assert [c["ci"] for c in inc["root_cause_candidates"][:3]] == ["orders", "host-b", "db"]
    why = inc["root_cause_candidates"][1]["why"]
    assert "change CHG-7 (drain host-b) began 17 min before the first alert" in why


def test_a_fault_just_before_on_a_ci_the_cmdb_could_lack_a_dependency_on_is_a_candidate(tmp_path):
    """search crashes; five minutes later cart returns errors. The CMDB records no path from
    cart to search (a service on another service is a kind of dependency it records, so
    it may have missed this one): two incidents, and cart's lists search as a candidate,
    with the incident it alerts in, below cart itself."""
    result = replay(tmp_path, [
        alert(0, "KubePodCrashLooping", "critical", service="search"),
        alert(300, "HighErrorRate", "warning", service="cart"),
    ])
    first, second = result["incidents"]
    assert names(first) == {"KubePodCrashLooping@search"} and names(second) == {"HighErrorRate@cart"}
    assert second["root_cause"] == "cart"
    cands = [c["ci"] for c in second["root_cause_candidates"]]
    assert cands[:2] == ["cart", "search"]
    why = second["root_cause_candidates"][1]["why"]
    assert f"alerting in {first['id']} from 5 min before" in why
    assert "cart may depend on it without the CMDB recording it" in why
    # the other way round, cart began 5 minutes after the crash: no timing speaks for it
    # as search's cause, and the crash is search's own (a cause alert, not a symptom)
    assert first["root_cause"] == "search"
    theirs = {c["ci"]: c for c in first["root_cause_candidates"]}
    assert theirs["cart"]["score"] < theirs["search"]["score"] / 10
    assert f"alerting in {second['id']} since 5 min after" in theirs["cart"]["why"]


def test_a_root_whose_own_alert_came_last_is_a_candidate_of_the_incident_before(tmp_path):
    """search crashes, and cart (which calls it, unknown to the CMDB) returns errors at
    once, while the crash's own alert waits out a longer `for:` and fires 4 minutes
    later, in an incident of its own. Opening it has cart's incident ranked again: search
    is listed there, below cart (a cause alerting after the alerts it would explain
    gains nothing from the timing), with the incident it alerts in."""
    result = replay(tmp_path, [
        alert(0, "HighErrorRate", "warning", service="cart"),
        alert(240, "KubePodCrashLooping", "critical", service="search"),
    ])
    first, second = result["incidents"]
    assert names(first) == {"HighErrorRate@cart"} and names(second) == {"KubePodCrashLooping@search"}
    assert first["root_cause"] == "cart" and second["root_cause"] == "search"
    cands = [c["ci"] for c in first["root_cause_candidates"]]
    assert cands[:2] == ["cart", "search"]
    why = first["root_cause_candidates"][1]["why"]
    assert f"alerting in {second['id']} since 4 min after" in why
    assert "cart may depend on it without the CMDB recording it" in why


def test_a_fault_seconds_before_is_the_likelier_cause_over_an_unrecorded_dependency(tmp_path):
    """The same, with the errors 10 s after the crash: two unrelated faults starting that
    close are rarer than one missing dependency, so search is the root cause, and cart,
    which it reaches, is impacted."""
    result = replay(tmp_path, [
        alert(0, "KubePodCrashLooping", "critical", service="search"),
        alert(10, "HighErrorRate", "warning", service="cart"),
    ])
    _, second = result["incidents"]
    assert second["root_cause"] == "search"
    assert second["impacted"] == ["cart"]
    assert second["explanation"].startswith("root cause search: alerting in ")



def test_a_database_nothing_is_recorded_to_use_is_its_namesakes_and_one_fault_with_it(tmp_path):
    """The CMDB forgot that cart keeps its data in cart-db (nothing is recorded to use
    cart-db). Named after cart, cart-db is taken for its datastore: the database going
    down and cart's and web's errors after it are one incident, rooted at the database,
    and the explanation says the dependency was inferred from the names."""
    cmdb = CMDB.replace("depends_on: [db, host-a]", "depends_on: [host-a]") + \
        "  - {id: cart-db, type: database, match: {service: cart-db}, depends_on: [host-c]}\n"
    result = replay(tmp_path, [
        alert(0, "MysqlDown", "critical", service="cart-db"),
        alert(60, "HighErrorRate", "critical", service="cart"),
        alert(120, "HighErrorRate", "critical", service="web"),
    ], cmdb)
    (inc,) = result["incidents"]
    assert names(inc) == {"MysqlDown@cart-db", "HighErrorRate@cart", "HighErrorRate@web"}
    assert inc["root_cause"] == "cart-db"
    assert inc["impacted"][:2] == ["web", "cart"]
    reasons = {a["ci"]: a["reason"] for a in inc["alerts"]}
    assert "cart depends_on cart-db (inferred: named after cart, and no CI is recorded to use it)" \
        in reasons["cart"]


TWO_BACKENDS = """
cis:
  - {id: web, criticality: high, match: {service: web}, depends_on: [cart, search]}
  - {id: cart, match: {service: cart}, depends_on: [db]}
  - {id: search, match: {service: search}, depends_on: [index]}
  - {id: db, type: database, match: {service: db}}
  - {id: index, type: database, match: {service: index}}
"""


def test_an_alert_outlasting_the_fault_it_joined_goes_to_the_fault_that_explains_it(tmp_path):
    # web's latency joins the database's fault, the only one then; search slows down
    # minutes later, and goes on long after the database recovered, as does web's
    # latency: it was search's all along, and joins it, not an incident of its own
    result = replay(tmp_path, [
        alert(0, "MongodbDown", "critical", service="db"),
        alert(30, "HighErrorRate", "critical", service="cart"),
        alert(120, "HighLatencyP99", "warning", service="web"),
        alert(300, "HighLatencyP99", "warning", service="search"),
        alert(900, "MongodbDown", "critical", "resolved", service="db"),
        alert(960, "HighErrorRate", "critical", "resolved", service="cart"),
        alert(3000, "HighLatencyP99", "warning", "resolved", service="search"),
        alert(3000, "HighLatencyP99", "warning", "resolved", service="web"),
    ], TWO_BACKENDS)
    by_root = {inc["root_cause"]: inc for inc in result["incidents"]}
    assert {root: names(inc) for root, inc in by_root.items()} == {
        "db": {"MongodbDown@db", "HighErrorRate@cart"},
        "search": {"HighLatencyP99@search", "HighLatencyP99@web"}}
    assert by_root["search"]["impacted"] == ["web"]
    assert by_root["db"]["resolved_at"] == at(960)


@pytest.mark.parametrize(("begins", "name", "labels", "joins"), [
    (680, "HighErrorRate", {"service": "web"}, False),  # 3 minutes after the fault ended: another one
    (600, "HighErrorRate", {"service": "web"}, True),  # within two minutes: its error rate lagging
    (680, "ErrorBudgetBurn", {"slo": "shop"}, True),  # an SLO's burn rate lags by far more
])
def test_a_fault_s_symptoms_begin_while_it_lasts(tmp_path, begins, name, labels, joins):
    result = replay(tmp_path, [
        alert(0, "MongodbDown", "critical", service="db"),
        alert(30, "HighErrorRate", "critical", service="cart"),
        alert(480, "MongodbDown", "critical", "resolved", service="db"),
        alert(500, "HighErrorRate", "critical", "resolved", service="cart"),
        alert(begins, name, "critical", **labels),
        alert(1200, name, "critical", "resolved", **labels),
    ])
    fault = {"MongodbDown@db", "HighErrorRate@cart"}
    late = f"{name}@{'web' if 'service' in labels else 'shop'}"
    if joins:
        [inc] = result["incidents"]
        assert names(inc) == fault | {late}
        assert inc["root_cause"] == "db"
    else:
        first, second = result["incidents"]
        assert (names(first), names(second)) == (fault, {late})
        assert first["root_cause"] == "db" and first["resolved_at"] == at(500)
        assert second["alerts"][0]["reason"].startswith("opens an incident")


@pytest.mark.parametrize(("name", "labels", "reopens"), [
    ("MongodbDown", {"service": "db"}, True),  # the fault itself, going on
    ("HighErrorRate", {"service": "cart"}, False),  # a symptom, with its fault over
    ("ErrorBudgetBurn", {"slo": "shop"}, True),  # an SLO's burn rate, lagging
])
def test_an_alert_firing_again_after_its_fault_was_over_reopens_only_at_the_fault(tmp_path, name, labels, reopens):
    result = replay(tmp_path, [
        alert(0, "MongodbDown", "critical", service="db"),
        alert(30, "HighErrorRate", "critical", service="cart"),
        alert(60, "ErrorBudgetBurn", "critical", slo="shop"),
        alert(480, "MongodbDown", "critical", "resolved", service="db"),
        alert(490, "ErrorBudgetBurn", "critical", "resolved", slo="shop"),
        alert(500, "HighErrorRate", "critical", "resolved", service="cart"),
        alert(900, name, "critical", **labels),  # within reopen_window of its own end
        alert(1200, name, "critical", "resolved", **labels),
    ])
    fault = {"MongodbDown@db", "HighErrorRate@cart", "ErrorBudgetBurn@shop"}
    if reopens:
        [inc] = result["incidents"]
        assert names(inc) == fault and inc["resolved_at"] == at(1200)
    else:
        first, second = result["incidents"]
        assert (names(first), names(second)) == (fault, {"HighErrorRate@cart"})
        assert first["resolved_at"] == at(500) and second["opened_at"] == at(900)
