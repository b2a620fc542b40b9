from __future__ import annotations

import pytest
from helpers import Manager, cmdb_of

from correlation.engine import TopologyCorrelator

_SHOP_CIS = (
    {"id": "shop", "type": "business_service", "criticality": "critical", "depends_on": ["web"]},
    {"id": "web", "criticality": "high", "depends_on": ["cart", "orders", "search", "reco"]},
    {"id": "reco", "depends_on": ["index", "host-a"]},
    {"id": "cart", "depends_on": ["db", "host-a"]},
    {"id": "orders", "depends_on": ["db", "host-a"]},
    {"id": "search", "depends_on": ["index", "host-b"]},
    {"id": "db", "type": "database", "depends_on": ["host-c"]},
    {"id": "index", "type": "database", "depends_on": ["host-c"]},
    {"id": "host-a", "type": "host", "depends_on": ["net"]},
    {"id": "host-b", "type": "host", "depends_on": ["net-2"]},
    {"id": "net-2", "type": "network"},
    {"id": "host-c", "type": "host", "depends_on": ["net"]},
    {"id": "net", "type": "network"},
)
SHOP = cmdb_of(*_SHOP_CIS)


def run(*alerts):
    mgr = Manager(TopologyCorrelator(SHOP))
    for name, ci, at in alerts:
        mgr.fire(name, ci, at)
    return mgr


def test_database_under_three_services_is_root_cause():
    mgr = run(("HighErrorRate", "cart", 0), ("HighErrorRate", "orders", 30),
              ("MongodbDown", "db", 60), ("HighErrorRate", "web", 90), ("ErrorBudgetBurn", "shop", 120))
    [inc] = mgr.open_incidents()
    a = mgr.corr.analyze(inc, 130)
    assert a.root_cause == "db"
    assert a.impacted == ["shop", "web", "cart", "orders"]  # business services first
    assert a.priority == "P1"
    assert "explains all 5 alerting CIs" in a.explanation


def test_two_unrelated_faults_at_once_stay_apart():
    mgr = run(("MongodbDown", "db", 0), ("NodeDown", "host-b", 20),
              ("HighErrorRate", "cart", 60), ("HighErrorRate", "search", 70))
    assert mgr.groups() == [{"HighErrorRate@cart", "MongodbDown@db"}, {"HighErrorRate@search", "NodeDown@host-b"}]
    roots = sorted(mgr.corr.analyze(i, 100).root_cause for i in mgr.open_incidents())
    assert roots == ["db", "host-b"]


def test_shared_host_without_alert_is_root_cause():
    mgr = run(("HighErrorRate", "cart", 0), ("HighLatencyP99", "reco", 40))
    [inc] = mgr.open_incidents()
    a = mgr.corr.analyze(inc, 60)
    assert a.root_cause == "host-a"
    assert "raised no alert of its own" in a.candidates[0]["why"]


def test_alerts_outside_the_window_open_a_new_incident():
    mgr = run(("MongodbDown", "db", 0), ("HighErrorRate", "cart", 5000))
    assert len(mgr.open_incidents()) == 2


def test_a_dependent_alerting_late_joins_while_the_ci_it_depends_on_is_still_down():
    # the service's own `for:` ran out 15 minutes into the fault, beyond the window since
    # the incident's last alert; the database is still down in it, so its fault goes on
    mgr = run(("MongodbDown", "db", 0), ("HighErrorRate", "cart", 900))
    [inc] = mgr.open_incidents()
    assert inc.cis == {"db", "cart"}
    assert mgr.corr.analyze(inc, 910).root_cause == "db"


def test_a_late_dependent_opens_its_own_incident_once_nothing_below_it_is_still_down():
    resolved = run(("MongodbDown", "db", 0))
    [m] = resolved.open_incidents()[0].alerts.values()
    m.status = "resolved"
    resolved.fire("HighErrorRate", "cart", 900)
    slow = run(("HighLatencyP99", "db", 0), ("HighErrorRate", "cart", 900))  # a symptom says less
    aside = run(("MongodbDown", "db", 0), ("HighErrorRate", "search", 900))  # not above the database
    for mgr in (resolved, slow, aside):
        assert len(mgr.open_incidents()) == 2


def test_alert_outside_cmdb_groups_by_labels():
    mgr = Manager(TopologyCorrelator(SHOP))
    mgr.fire("KubeJobFailed", None, 0, cluster="c1", namespace="ops", job_name="a")
    mgr.fire("KubeJobFailed", None, 60, cluster="c1", namespace="ops", job_name="b")
    mgr.fire("KubeJobFailed", None, 60, cluster="c2", namespace="ops", job_name="a")
    assert [len(i.alerts) for i in mgr.open_incidents()] == [2, 1]
    assert "no CMDB CI matches its labels" in mgr.reasons[1]


def test_late_root_alert_joins_and_becomes_root_cause():
    mgr = run(("HighErrorRate", "cart", 0), ("HighErrorRate", "orders", 10), ("NodeDown", "db", 40))
    [inc] = mgr.open_incidents()
    assert mgr.corr.analyze(inc, 50).root_cause == "db"


def test_cycle_in_dependencies():
    cmdb = cmdb_of({"id": "a", "depends_on": ["b"]}, {"id": "b", "depends_on": ["a", "c"]}, {"id": "c"})
    mgr = Manager(TopologyCorrelator(cmdb))
    mgr.fire("HighErrorRate", "a", 0)
    mgr.fire("HighErrorRate", "b", 10)
    mgr.fire("InstanceDown", "c", 20)
    [inc] = mgr.open_incidents()
    assert mgr.corr.analyze(inc, 30).root_cause == "c"


def test_reason_names_the_path():
    mgr = run(("MongodbDown", "db", 0), ("HighErrorRate", "web", 30))
    assert mgr.reasons[1].startswith("web depends on db (2 hops)")


@pytest.mark.parametrize("listed", [True, False])  # the CIs its labels fit listed at once, or asked of each
def test_an_alert_on_no_ci_joins_the_active_incident_whose_root_its_labels_fit(listed, monkeypatch):
    from correlation import engine

    monkeypatch.setattr(engine, "FITTING_BLOCKS", engine.FITTING_BLOCKS if listed else 0)
    cmdb = cmdb_of(
        {"id": "node-1", "type": "host", "match": {"cluster": "eu", "node": "node-1"}},
        {"id": "shop", "match": {"cluster": "eu", "namespace": "shop", "service": "shop"}, "depends_on": ["node-1"]},
        {"id": "node-2", "type": "host", "match": {"cluster": "us", "node": "node-2"}},
    )
    mgr = Manager(TopologyCorrelator(cmdb))
    down = mgr.fire("NodeDown", "node-1", 0, cluster="eu", job="node-exporter")
    # a job-wide TargetDown of the node exporter names the cluster but no node
    joined = mgr.fire("TargetDown", None, 60, cluster="eu", job="node-exporter")
    assert joined is down
    assert "they fit node-1, the likely root cause, and share job=node-exporter" in mgr.reasons[-1]
    # a cluster-wide aggregate that fits too but shares nothing else is no sign of the fault
    rules = mgr.fire("PrometheusRuleFailures", None, 70, cluster="eu", namespace="monitoring")
    assert rules is not down
    # another cluster's, or one whose labels contradict every block, opens its own
    other = mgr.fire("TargetDown", None, 90, cluster="us", job="node-exporter")
    assert other is not down
    apart = mgr.fire("KubeJobFailed", None, 120, cluster="eu", namespace="batch", node="node-9")
    assert apart is not down


def changes_of(*records, window: float = 7200.0):
    from rules.changes import Change, ChangeStore

    store = ChangeStore(suspect_window=window)
    for cid, ci, start, end in records:
        store.add(Change(cid, ci, start, end, f"deploy {ci}"))
    return store


def test_a_change_shortly_before_makes_its_ci_the_likelier_silent_root():
    """web alone alerts; of the four services it needs, the one deployed twenty minutes
    earlier is the likelier cause, and the explanation says so."""
    plain = run(("HighErrorRate", "web", 3600))
    [inc] = plain.open_incidents()
    before = [c["ci"] for c in plain.corr.analyze(inc, 3660).candidates]
    assert before[0] == "web" and "search" != before[1]

    mgr = Manager(TopologyCorrelator(SHOP))
    mgr.corr.attach_changes(changes_of(("CHG-1", "search", 2400, 2500)))
    mgr.fire("HighErrorRate", "web", 3600)
    [inc] = mgr.open_incidents()
    a = mgr.corr.analyze(inc, 3660)
    ranked = [c["ci"] for c in a.candidates]
    assert ranked.index("search") < ranked.index("cart")
    assert ranked.index("search") <= 1
    [why] = [c["why"] for c in a.candidates if c["ci"] == "search"]
    assert "change CHG-1 (deploy search) began 20 min before the first alert" in why


def test_changes_count_only_shortly_before_and_only_when_rare():
    mgr = Manager(TopologyCorrelator(SHOP))
    store = changes_of(("CHG-1", "search", 0, 100), ("CHG-2", "cart", 9000, 9100))
    mgr.corr.attach_changes(store)
    # CHG-1 ended over two hours before the alert, CHG-2 began after it: neither counts
    assert mgr.corr.change_lookup("search", 8000) is None
    assert mgr.corr.change_lookup("cart", 8000) is None
    assert mgr.corr.change_lookup("search", 3000) is not None
    # when every CI changes all the time a change says nothing about the root
    busy = changes_of(*[(f"C{i}-{ci}", ci, t, t + 60) for i, t in enumerate(range(0, 7200, 600))
                        for ci in SHOP.cis])
    mgr.corr.attach_changes(busy)
    assert busy.base_rate(7000, len(SHOP)) == 1.0
    assert mgr.corr.change_lookup("search", 7000) is None


def test_a_lone_resource_warning_is_no_evidence_of_a_common_cause():
    # the disk warning on host-a is likelier noise than a fault, so the later alerts on
    # CIs that run on host-a do not merge everything into a host-a incident
    mgr = Manager(TopologyCorrelator(SHOP))
    mgr.fire("NodeFilesystemSpaceFillingUp", "host-a", 0, severity="warning")
    mgr.fire("KubeDeploymentReplicasMismatch", "orders", 300, severity="warning")
    mgr.fire("HighErrorRate", "web", 500, severity="critical")
    mgr.fire("HighErrorRate", "cart", 700, severity="critical")
    assert {"NodeFilesystemSpaceFillingUp@host-a"} in mgr.groups()
    assert not any("explains this alert and the" in r for r in mgr.reasons)



def test_an_alert_on_no_ci_may_fit_an_alerting_ci_below_a_silent_root():
    cmdb = cmdb_of(
        {"id": "net", "type": "network", "match": {"cluster": "eu", "job": "blackbox", "instance": "gw"}},
        *({"id": f"node-{n}", "type": "host", "match": {"cluster": "eu", "node": f"node-{n}"}, "depends_on": ["net"]}
          for n in (1, 2, 3)),
    )
    mgr = Manager(TopologyCorrelator(cmdb))
    for n in (1, 2, 3):
        mgr.fire("NodeDown", f"node-{n}", n, cluster="eu", job="node-exporter", node=f"node-{n}")
    [inc] = mgr.open_incidents()
    assert mgr.corr.analyze(inc, 10).root_cause == "net"
    # the network's own match contradicts job=node-exporter; the nodes below it fit
    assert mgr.fire("TargetDown", None, 60, cluster="eu", job="node-exporter") is inc
    assert "they fit node-1, which depends on the likely root cause net, and share job=node-exporter" \
        in mgr.reasons[-1]


@pytest.mark.parametrize("listed", [True, False])  # the CIs its labels fit listed at once, or asked of each
def test_an_alert_on_no_ci_finds_the_incident_it_fits_among_many_off_the_cmdb(listed, monkeypatch):
    """With the incident manager's books: the incidents of alerts on no CI (grouped by
    their labels) are not weighed, and of the alerting CIs the root explains, the first
    that fits and shares a label is named."""
    from correlation import engine
    from daemon.config import IncidentSettings
    from daemon.incidents import IncidentManager
    from daemon.model import Alert
    from daemon.pipeline import AlertEvent

    monkeypatch.setattr(engine, "FITTING_BLOCKS", engine.FITTING_BLOCKS if listed else 0)
    cmdb = cmdb_of(
        {"id": "net", "type": "network", "match": {"cluster": "eu", "job": "blackbox", "instance": "gw"}},
        *({"id": f"node-{n}", "type": "host", "match": {"cluster": "eu", "node": f"node-{n}"}, "depends_on": ["net"]}
          for n in (1, 2, 3)),
    )
    mgr = IncidentManager(IncidentSettings(), TopologyCorrelator(cmdb))

    def fire(at: float, ci: str | None, **labels: str):
        alert = Alert(labels, {}, at, None, "firing")
        mgr.apply([AlertEvent(alert, ci=ci)], at)
        return mgr.incident_for(alert.fingerprint), alert.fingerprint

    batch = [fire(float(i), None, alertname="KubeJobFailed", cluster="eu", namespace=f"batch-{i}",
                  job="batch") for i in range(4)]  # on no CI, grouped by their labels
    for n in (3, 1, 2):
        inc, _ = fire(10.0 + n, f"node-{n}", alertname="NodeDown", cluster="eu", job="node-exporter",
                      node=f"node-{n}")
    assert {i.id for i in mgr.joinable_incidents(20.0, on_any_ci=True)} == {inc.id}
    assert len({i.id for i, _ in batch} | {inc.id}) == 5
    assert inc.root_cause == "net"
    joined, fp = fire(60.0, None, alertname="TargetDown", cluster="eu", job="node-exporter")
    assert joined is inc
    assert "they fit node-1, which depends on the likely root cause net, and share job=node-exporter" \
        in inc.alerts[fp].reason
    # one more of the batch jobs' alerts shares job=batch with theirs only: it groups with its own
    other, _ = fire(70.0, None, alertname="KubeJobFailed", cluster="eu", namespace="batch-0", job="batch", x="1")
    assert other is batch[0][0]


def test_a_change_counts_for_one_fault_not_for_each_alert_on_its_ci():
    """A deploy on the database just before it went down makes the database the likely
    root cause. A later alert there is one more sign of that fault: read as a second,
    separate fault it would be credited with the same deploy again, and split off."""
    fillers = [{"id": f"svc-{i}"} for i in range(60)]  # among many CIs a change is rare
    cmdb = cmdb_of({"id": "db", "type": "database"}, {"id": "app", "depends_on": ["db"]}, *fillers)
    mgr = Manager(TopologyCorrelator(cmdb))
    mgr.corr.attach_changes(changes_of(("CHG-1", "db", 3000, 3100)))
    down = mgr.fire("MongodbDown", "db", 3600, severity="critical")
    assert "change CHG-1" in mgr.corr.analyze(down, 3600).candidates[0]["why"]
    assert mgr.fire("KubeStatefulSetReplicasMismatch", "db", 4300, severity="warning") is down


def test_reason_follows_dependencies_not_a_shared_host():
    # web and db share a host: the shortest route between them ignoring direction runs
    # through it, but the fault reaches web along web -> api -> db
    cmdb = cmdb_of(
        {"id": "web", "depends_on": ["host", "api"]},
        {"id": "api", "depends_on": ["db"]},
        {"id": "db", "type": "database", "depends_on": ["host"]},
        {"id": "host", "type": "host"},
    )
    mgr = Manager(TopologyCorrelator(cmdb))
    mgr.fire("MongodbDown", "db", 0)
    mgr.fire("HighErrorRate", "web", 30)
    assert mgr.reasons[1] == ("web depends on db (2 hops), the likely root cause: "
                              "web depends_on api, api depends_on db")


@pytest.mark.parametrize("section, line, message", [
    ("correlation:\n  window: 5m\n  max_span: soon\n", 3,
     "correlation.max_span: not a duration (use e.g. 30s, 5m, 1h): 'soon'"),
    ("correlation:\n  model: {new_fault: 2}\n", 2, "correlation.model.new_fault is a probability: at most 1, not 2"),
    ("correlation:\n  model: {settle: 900, noise: 0}\n", 2, "correlation.model.noise must be a positive number, not 0"),
    ("correlation:\n  model: {nois: 0.1}\n", 2, "correlation.model.nois: unknown; known: after_change,"),
    ("correlation: [window]\n", 1, "correlation: must be a mapping of settings, not a list"),
])
def test_check_config_names_the_correlation_setting_that_is_wrong(tmp_path, section, line, message):
    from daemon.cli import check_config_errors

    path = tmp_path / "config.yaml"
    path.write_text("data_dir: data\n" + section)
    [error] = check_config_errors(str(path))
    assert error.startswith(f"{path}:{line + 1}: {message}"), error


def test_check_config_lists_every_wrong_correlation_setting_on_its_own_line(tmp_path):
    from daemon.cli import check_config_errors

    path = tmp_path / "config.yaml"
    path.write_text("data_dir: data\ncorrelation:\n  window: soon\n  max_hops: -1\n  windw: 5m\n"
                    "  model: {new_fault: 2, nois: 0.1}\n  cause_alerts: [\"(\"]\n")
    errors = check_config_errors(str(path))
    assert [e.removeprefix(f"{path}:").split(":")[0] for e in errors] == ["3", "4", "5", "6", "6", "7"], errors
    assert "correlation.window: not a duration" in errors[0]
    assert "correlation.max_hops must be a non-negative integer" in errors[1]
    # closures are cached that deep: thousands of hops would fill the memory
    path.write_text("data_dir: data\ncorrelation:\n  max_hops: 100000000\n  depth: 33\n")
    assert [e.removeprefix(f"{path}:") for e in check_config_errors(str(path))] == [
        "3: correlation.max_hops must be at most 32", "4: correlation.depth must be at most 32"]
    assert "correlation.windw: unknown setting; did you mean 'window'?" in errors[2]
    assert "correlation.model.new_fault is a probability" in errors[3]
    assert "correlation.model.nois: unknown" in errors[4]
    assert "correlation.cause_alerts:" in errors[5]


def test_a_second_alert_on_a_dependent_pays_for_its_kind():
    """A node down takes its database down; the database's CPU throttling a few minutes
    later is a resource condition that dependents rarely show: as likely noise, it stays
    apart, while the node's own memory pressure still belongs to the node's fault."""
    mgr = run(("NodeDown", "host-c", 0), ("MongodbDown", "db", 30), ("CPUThrottlingHigh", "db", 200),
              ("NodeMemoryHighUtilization", "host-c", 230))
    assert mgr.groups() == [{"CPUThrottlingHigh@db"},
                            {"MongodbDown@db", "NodeDown@host-c", "NodeMemoryHighUtilization@host-c"}]


def test_an_alert_does_not_merge_an_incident_that_the_joint_fault_leaves_unexplained():
    """The gateway's errors fit both a database fault (through cart) and a lone latency
    warning on search. One fault at the database explains the gateway but not search, and
    one at search not the database: the two incidents are not merged into one whose root
    leaves the other's alerts as noise."""
    mgr = run(("MongodbDown", "db", 0), ("HighErrorRate", "cart", 30), ("HighLatencyP99", "search", 60),
              ("HighErrorRate", "web", 90))
    assert len(mgr.open_incidents()) == 2
    assert {"MongodbDown@db", "HighErrorRate@cart"} in [g - {"HighErrorRate@web"} for g in mgr.groups()]


def two_gateways(**shop: object):
    """A business service behind two load balancers and gateways: a catalogue behind
    one, a host behind the other; `shop`: more fields of the business service."""
    return cmdb_of(
        {"id": "shop", "type": "business_service", "criticality": "critical", "depends_on": ["lb-1", "lb-2"],
         **shop},
        {"id": "lb-1", "depends_on": ["web-1"]},
        {"id": "lb-2", "depends_on": ["web-2"]},
        {"id": "web-1", "depends_on": ["cat-1"]},
        {"id": "web-2", "depends_on": ["host-2"]},
        {"id": "cat-1"},
        {"id": "host-2", "type": "host"},
    )


TWO_GATEWAYS = two_gateways()


def test_a_shared_dependent_stays_with_the_fault_still_firing_on_it():
    """A catalogue fault reaches the business service through its gateway and load
    balancer, whose alerts keep firing; later a node fault behind the other gateway
    alerts on that gateway. A second SLO alert on the business service comes from the
    fault that is already there (its SLO alert still fires), not from the one that merely
    alerted last, two quiet hops further down."""
    mgr = Manager(TopologyCorrelator(TWO_GATEWAYS))
    for name, ci, at in (("HighErrorRate", "cat-1", 0), ("HighErrorRate", "web-1", 60),
                         ("NginxHighHttp5xxErrorRate", "lb-1", 70), ("NodeDown", "host-2", 400),
                         ("HighErrorRate", "web-2", 650)):
        mgr.fire(name, ci, at)
    mgr.fire("ErrorBudgetBurn", "shop", 80, window="5m")
    mgr.fire("ErrorBudgetBurn", "shop", 700, window="6h")
    assert mgr.groups() == [
        {"ErrorBudgetBurn@shop", "HighErrorRate@cat-1", "HighErrorRate@web-1", "NginxHighHttp5xxErrorRate@lb-1"},
        {"HighErrorRate@web-2", "NodeDown@host-2"},
    ]
    shop = [i for i in mgr.open_incidents() if "cat-1" in i.cis][0]
    assert len([m for m in shop.alerts.values() if m.ci == "shop"]) == 2


ROUTES = cmdb_of(
    {"id": "lb", "depends_on": ["web"], "match": {"ingress": "shop"}},
    {"id": "web", "depends_on": ["catalogue", "orders", "host-w"], "match": {"service": "web"}},
    {"id": "catalogue", "match": {"service": "catalogue"}},
    {"id": "orders", "depends_on": ["host-w"], "match": {"service": "orders"}},
    {"id": "host-w", "type": "host", "match": {"node": "host-w"}},
)


def test_a_gateway_alert_naming_a_route_joins_the_fault_behind_that_route():
    """The gateway fails for /api/catalogue (a catalogue fault), then a node it shares
    with orders goes down. The gateway's new alert for /api/orders names orders, which
    the node's fault reaches and the catalogue's does not: it joins the node."""
    mgr = Manager(TopologyCorrelator(ROUTES))
    mgr.fire("HighErrorRate", "catalogue", 0)
    mgr.fire("HighErrorRate", "web", 60, route="/api/catalogue")
    mgr.fire("NodeDown", "host-w", 300)
    mgr.fire("KubePodCrashLooping", "catalogue", 350)
    mgr.fire("HighErrorRate", "web", 400, route="/api/orders")
    [node] = [i for i in mgr.open_incidents() if "host-w" in i.cis]
    assert {m.labels.get("route") for m in node.alerts.values() if m.ci == "web"} == {"/api/orders"}
    [cat] = [i for i in mgr.open_incidents() if "catalogue" in i.cis]
    assert {m.labels.get("route") for m in cat.alerts.values() if m.ci == "web"} == {"/api/catalogue"}


TWO_SLOS = two_gateways(match=[{"slo": "shop-eu"}, {"slo": "shop-us"}])


def test_an_alert_on_another_part_of_a_ci_is_not_a_repeat():
    """The business service has two SLOs. A catalogue fault burns the first through its
    load balancer and keeps alerting; a node fault behind the other balancer follows.
    The second SLO's burn is news on the business service, not one more alert of the
    catalogue incident that already burns the first (for free): each fault would have to
    reach it, and the one that alerted last is the likelier."""
    mgr = Manager(TopologyCorrelator(TWO_SLOS))
    for name, ci, at in (("HighErrorRate", "cat-1", 0), ("HighErrorRate", "web-1", 60),
                         ("NginxHighHttp5xxErrorRate", "lb-1", 70)):
        mgr.fire(name, ci, at)
    mgr.fire("ErrorBudgetBurn", "shop", 80, slo="shop-eu")
    for name, ci, at in (("NodeDown", "host-2", 300), ("HighErrorRate", "web-2", 360),
                         ("HighLatencyP99", "web-1", 400), ("NginxHighHttp5xxErrorRate", "lb-2", 425)):
        mgr.fire(name, ci, at)
    mgr.fire("ErrorBudgetBurn", "shop", 430, slo="shop-us")
    [node] = [i for i in mgr.open_incidents() if "host-2" in i.cis]
    assert {m.labels.get("slo") for m in node.alerts.values() if m.ci == "shop"} == {"shop-us"}
    [cat] = [i for i in mgr.open_incidents() if "cat-1" in i.cis]
    assert {m.labels.get("slo") for m in cat.alerts.values() if m.ci == "shop"} == {"shop-eu"}


def test_a_dependent_does_not_join_a_root_that_only_reports_its_own_resources():
    """A filling disk on host-a, then latency on the cart that runs there. A disk that
    is merely filling up or a busy CPU describes the node's own resources and rarely
    reaches what runs on it: the latency is no symptom of it, and stays apart. A node
    that is down does reach it."""
    mgr = Manager(TopologyCorrelator(SHOP))
    mgr.fire("NodeFilesystemSpaceFillingUp", "host-a", 0, severity="warning")
    mgr.fire("HighLatencyP99", "cart", 120, severity="warning")
    assert mgr.groups() == [{"HighLatencyP99@cart"}, {"NodeFilesystemSpaceFillingUp@host-a"}]
    mgr = Manager(TopologyCorrelator(SHOP))
    mgr.fire("NodeDown", "host-a", 0, severity="critical")
    mgr.fire("HighLatencyP99", "cart", 120, severity="warning")
    assert mgr.groups() == [{"HighLatencyP99@cart", "NodeDown@host-a"}]


def test_an_slo_burning_over_another_window_stays_with_the_fault_that_burns_it():
    """A catalogue fault burns the EU SLO through its load balancer and keeps firing
    there; a node fault behind the other balancer alerts later, and nearer in time. The
    EU SLO then burns over its long window too: the same part of the business service,
    already burning for the catalogue fault, not news for the fault that alerted last."""
    mgr = Manager(TopologyCorrelator(TWO_SLOS))
    for name, ci, at in (("HighErrorRate", "cat-1", 0), ("HighErrorRate", "web-1", 60),
                         ("NginxHighHttp5xxErrorRate", "lb-1", 70)):
        mgr.fire(name, ci, at)
    mgr.fire("ErrorBudgetBurn", "shop", 80, slo="shop-eu", window="1h")
    for name, ci, at in (("NodeDown", "host-2", 300), ("HighErrorRate", "web-2", 360),
                         ("NginxHighHttp5xxErrorRate", "lb-2", 425)):
        mgr.fire(name, ci, at)
    mgr.fire("ErrorBudgetBurn", "shop", 700, slo="shop-eu", window="6h")
    [cat] = [i for i in mgr.open_incidents() if "cat-1" in i.cis]
    assert {m.labels["window"] for m in cat.alerts.values() if m.ci == "shop"} == {"1h", "6h"}


def test_only_a_label_with_several_matched_values_tells_parts_of_a_ci_apart():
    """A host matched by its node name, or by its exporter's address: two alerts from the
    node name with different `instance` values are about the one host (a second
    exporter), not two parts of it; two SLOs of one business service are two parts."""
    corr = TopologyCorrelator(cmdb_of(
        {"id": "host-1", "type": "host", "match": [{"node": "host-1"}, {"instance": "10.0.0.1:9100"}]},
        {"id": "shop", "type": "business_service", "depends_on": ["host-1"],
         "match": [{"slo": "shop-eu"}, {"slo": "shop-us"}]},
    ))
    mgr = Manager(corr)
    inc = mgr.fire("NodeDown", "host-1", 0, node="host-1", instance="10.0.0.1:10250")
    assert not corr._other_part(inc, "host-1", {"node": "host-1", "instance": "10.0.0.1:9100"})
    mgr.fire("ErrorBudgetBurn", "shop", 60, slo="shop-eu")
    assert corr._other_part(inc, "shop", {"slo": "shop-us"})
    assert not corr._other_part(inc, "shop", {"slo": "shop-eu"})


def _chain(top: str, hops: int, bottom: str) -> list[dict]:
    """`top` depending on `bottom` through `hops - 1` CIs in between."""
    names = [top, *(f"{top}-{i}" for i in range(1, hops)), bottom]
    return [{"id": a, "depends_on": [b]} for a, b in zip(names[:-1], names[1:], strict=True)]


def test_a_fault_rarely_crosses_several_quiet_cis_in_a_row():
    """Two faults, each at an alerting service with an alerting caller. The only CI
    that explains all four alerts lies two hops below one service but six below the
    other, through five CIs that raised nothing: two faults, not one behind that
    long quiet run. One quiet CI on the way is common: a zone network partitioned
    behind the (quiet) hosts of three services that alert is still the root cause."""
    corr = TopologyCorrelator(cmdb_of(
        *_chain("a", 2, "deep"), *_chain("b", 6, "deep"), {"id": "deep"},
        {"id": "ua", "depends_on": ["a"]}, {"id": "ub", "depends_on": ["b"]},
    ))
    onsets = {"a": 0, "ua": 30, "b": 60, "ub": 90}
    weights = {ci: corr.alert_evidence({"alertname": "HighErrorRate"}, at) for ci, at in onsets.items()}
    assert [h.ci for h in corr.explainer.rank(weights, 3)][:2] == ["a", "b"]

    corr = TopologyCorrelator(cmdb_of(
        *(ci for n in (1, 2, 3) for ci in _chain(f"svc-{n}", 2, "zone")), {"id": "zone", "type": "network"},
    ))
    weights = {f"svc-{n}": corr.alert_evidence({"alertname": "HighErrorRate"}, 20.0 * n) for n in (1, 2, 3)}
    assert corr.explainer.best(weights).ci == "zone"


def test_a_worse_state_of_the_same_part_of_a_ci_joins_the_warning_about_it_however_late():
    """A disk filling up, then almost out of space two hours later: the same device and
    mount point, one episode. A node short of memory, then down, names no part of the
    node: its memory warning is no sign that the node's fault had begun."""
    cmdb = cmdb_of({"id": "node-1", "type": "host", "match": {"ci": "node-1", "node": "node-1"}})
    m = Manager(TopologyCorrelator(cmdb))
    target = {"node": "node-1", "instance": "10.0.0.1:9100", "job": "node-exporter"}
    disk = {**target, "device": "/dev/sda1", "mountpoint": "/"}
    filling = m.fire("NodeFilesystemSpaceFillingUp", "node-1", 0.0, severity="warning", **disk)
    other = m.fire("NodeFilesystemAlmostOutOfSpace", "node-1", 3600.0, severity="critical",
                   **{**disk, "device": "/dev/sdb1", "mountpoint": "/data"})  # another disk
    full = m.fire("NodeFilesystemAlmostOutOfSpace", "node-1", 7200.0, severity="critical", **disk)
    assert full is filling and other is not filling
    assert m.reasons[-1] == ("the same part of node-1 as NodeFilesystemSpaceFillingUp, still firing here, "
                             "in a worse state")
    memory = m.fire("NodeMemoryHighUtilization", "node-1", 20000.0, severity="warning", **target)
    down = m.fire("NodeDown", "node-1", 27200.0, severity="critical", **target)
    assert down is not memory and "worse state" not in m.reasons[-1]


@pytest.mark.parametrize(("own", "late", "active"), [
    ("KubePodCrashLooping", "HighErrorRate", True),  # a crash loop's errors
    ("CPUThrottlingHigh", "KubeHpaMaxedOut", True),  # one more word on its resources
    ("CPUThrottlingHigh", "HighErrorRate", False),  # errors: of a fault that began meanwhile
])
def test_past_the_window_a_ci_firing_in_an_incident_takes_only_what_its_alerts_could_cause(own, late, active):
    """A CI still firing in a quiet incident keeps taking its own later alerts that say no
    more than its earlier ones. Its own resources running short (CPU throttling) rarely
    cause errors: the errors that come later are another fault's."""
    corr = TopologyCorrelator(SHOP)
    inc = Manager(corr).fire(own, "cart", 0.0, severity="warning")
    at = corr.config.window + 60.0
    ev = corr.alert_evidence({"alertname": late, "severity": "warning"}, at)
    assert corr._active(inc, at, corr.config.window, "cart", ev) is active


def test_whether_a_fault_was_over_follows_its_root_and_the_cmdb():
    """`over` for a resolved member firing again: where the fault shows first is kept per
    incident revision, and worked out again when the root cause moves or the CMDB does."""
    from daemon.incidents import Incident, Member

    def member(name: str, ci: str) -> Member:
        return Member(f"{name}@{ci}", {"alertname": name}, {}, "resolved", 0.0, 100.0, 0.0, 100.0, ci=ci)

    inc = Incident("INC-1", 1, "resolved", 0.0, 100.0, root_cause="db", revision=3)
    inc.alerts = {m.fingerprint: m for m in (member("MongodbDown", "db"), member("HighErrorRate", "cart"),
                                             member("HighErrorRate", "web"))}
    corr = TopologyCorrelator(SHOP)
    later = 100.0 + 600.0  # well past `symptom_lag` after every alert ended
    assert corr.over(inc, later, "cart")  # a symptom: its fault was over
    assert not corr.over(inc, later, "db")  # the root's own alert: the fault goes on
    inc.root_cause = "cart"  # ranked again (a change recorded), the members as they were
    assert not corr.over(inc, later, "cart")
    assert corr.over(inc, later, "web")
    inc.root_cause = "host-a"  # a root with no alert: the fault shows first right above it
    assert not corr.over(inc, later, "cart")
    assert corr.over(inc, later, "web")
    # the CMDB reloaded: web now runs on host-a as well
    moved = cmdb_of(*({**ci, "depends_on": [*ci.get("depends_on", []), "host-a"]} if ci["id"] == "web" else ci
                      for ci in _SHOP_CIS))
    current = [SHOP]
    corr = TopologyCorrelator(lambda: current[0])
    assert corr.over(inc, later, "web")
    current[0] = moved
    assert not corr.over(inc, later, "web")
