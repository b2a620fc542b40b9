"""Problem clustering through the real pipeline: recurrences become problems, different
faults stay apart, the same pattern on hosts of one role is one problem."""

import json

from problemshop import DAY, HOUR, T0, Shop, db_down, db_slow, disk_full

from daemon.problems.model import problem_view


def test_first_occurrence_is_no_problem_yet(tmp_path):
    shop = Shop(tmp_path)
    first = shop.fault(0, db_down())
    assert shop.problem_of(first) is None
    assert shop.problems.listing() == []


def test_recurrence_on_the_same_ci_links_both_incidents_to_one_problem(tmp_path):
    shop = Shop(tmp_path)
    first = shop.fault(0, db_down())
    second = shop.fault(2 * DAY, db_down())
    pid = shop.problem_of(first)
    assert pid is not None and shop.problem_of(second) == pid
    [problem] = shop.problems.listing()
    assert problem.root_cause == "shop-db"
    assert "MysqlDown" in problem.signature and problem.signature.startswith("database:")
    third = shop.fault(5 * DAY, db_down())
    assert shop.problem_of(third) == pid
    stats = problem.stats()
    assert stats["count"] == 3
    assert stats["ttr_mean_seconds"] == 1800.0


def test_recurrence_threshold_is_configurable(tmp_path):
    shop = Shop(tmp_path, "min_incidents: 3")
    a = shop.fault(0, db_down())
    b = shop.fault(DAY, db_down())
    assert shop.problem_of(a) is None and shop.problem_of(b) is None
    c = shop.fault(2 * DAY, db_down())
    assert shop.problem_of(a) == shop.problem_of(b) == shop.problem_of(c) is not None


def test_two_different_faults_on_one_ci_are_kept_apart(tmp_path):
    shop = Shop(tmp_path)
    down, slow = [], []
    for day in (0, 2):  # down, slow, down, slow: a day apart
        down.append(shop.fault(day * DAY, db_down()))
        slow.append(shop.fault((day + 1) * DAY, db_slow()))
    assert shop.problem_of(down[0]) == shop.problem_of(down[1]) is not None
    assert shop.problem_of(slow[0]) == shop.problem_of(slow[1]) is not None
    assert shop.problem_of(down[0]) != shop.problem_of(slow[0])
    assert {p.root_cause for p in shop.problems.listing()} == {"shop-db"}


def test_the_same_pattern_on_several_hosts_of_one_role_is_one_problem(tmp_path):
    shop = Shop(tmp_path)
    incidents = [
        shop.fault(i * DAY, [disk_full(node)], duration=4 * HOUR)
        for i, node in enumerate(["web-1", "web-2", "web-3"])
    ]
    pids = {shop.problem_of(i) for i in incidents}
    assert len(pids) == 1 and None not in pids
    [problem] = shop.problems.listing()
    assert problem.root_cis == ["web-1", "web-2", "web-3"]


def _roots_by_links(p):
    roots = [link.root for link in p.links.values() if link.root]
    return sorted(set(roots)), (max(sorted(set(roots)), key=roots.count) if roots else None)


def test_a_problems_root_cis_follow_its_links_through_splits_merges_and_moves(tmp_path):
    """The root CIs are counted as links come and go, not read from every link: after
    each change they are what the links say."""
    shop = Shop(tmp_path)
    nodes = ["web-1", "web-2", "web-3", "web-1", "web-3", "web-1"]
    incidents = [shop.fault(i * DAY, [disk_full(node)], duration=4 * HOUR) for i, node in enumerate(nodes)]
    [problem] = shop.problems.listing()
    assert (problem.root_cis, problem.root_cause) == (["web-1", "web-2", "web-3"], "web-1")
    web3 = [iid for iid, node in zip(incidents, nodes, strict=True) if node == "web-3"]
    new = shop.problems.split(problem.id, web3, "bob", T0 + 7 * DAY)
    assert (problem.root_cis, problem.root_cause) == (["web-1", "web-2"], "web-1")
    assert (new.root_cis, new.root_cause) == (["web-3"], "web-3")
    shop.problems.link_incident(new.id, incidents[1], "bob", T0 + 7 * DAY)  # web-2's, moved
    assert (problem.root_cis, new.root_cis, new.root_cause) == (["web-1"], ["web-2", "web-3"], "web-3")
    shop.problems.merge(new.id, [problem.id], "bob", T0 + 8 * DAY)
    assert (new.root_cis, new.root_cause) == (["web-1", "web-2", "web-3"], "web-1")
    assert (problem.root_cis, problem.root_cause) == ([], None)
    for p in (problem, new):
        assert (p.root_cis, p.root_cause) == _roots_by_links(p)


def test_a_problem_title_drops_an_incident_unlinked_from_it(tmp_path):
    """An open incident linked on its first alerts is unlinked once more alerts make it
    another fault; the problem's title no longer names its CI."""
    shop = Shop(tmp_path)
    for i, node in enumerate(["web-1", "web-2"]):
        shop.fault(i * DAY, [disk_full(node)])
    [problem] = shop.problems.listing()
    shop.post(3 * DAY, [disk_full("web-3")])
    web3 = shop.incident_of(disk_full("web-3")[0])
    assert shop.problem_of(web3) == problem.id
    assert problem_view(problem, shop.clock.now())["title"].endswith("on 3 CIs (web-1, web-2, web-3)")
    down = [({"alertname": name, "node": "web-3", "severity": "critical"}, {"summary": name})
            for name in ("NodeDown", "KubeNodeNotReady", "KubeNodeUnreachable")]
    shop.post(3 * DAY + 60, down)
    assert shop.incident_of(down[0][0]) == web3 and shop.problem_of(web3) is None
    assert problem_view(problem, shop.clock.now())["title"].endswith("on 2 CIs (web-1, web-2)")
    row = shop.store.query_one("SELECT doc FROM problems WHERE id=?", (problem.id,))
    assert json.loads(row[0])["title"].endswith("on 2 CIs (web-1, web-2)")


def test_the_same_pattern_on_a_host_of_another_role_is_not_joined(tmp_path):
    shop = Shop(tmp_path)
    web = [shop.fault(i * DAY, [disk_full(node)]) for i, node in enumerate(["web-1", "web-2"])]
    db = shop.fault(3 * DAY, [disk_full("db-1")])
    assert shop.problem_of(web[0]) is not None
    assert shop.problem_of(db) is None


def test_cross_ci_grouping_can_be_switched_off(tmp_path):
    shop = Shop(tmp_path, "cross_ci: false")
    a = shop.fault(0, [disk_full("web-1")])
    b = shop.fault(DAY, [disk_full("web-2")])
    assert shop.problem_of(a) is None and shop.problem_of(b) is None


def test_an_incident_matching_nothing_waits_only_for_the_candidate_window(tmp_path):
    shop = Shop(tmp_path, "candidate_window: 7d")
    a = shop.fault(0, db_down())
    b = shop.fault(10 * DAY, db_down())
    assert shop.problem_of(a) is None and shop.problem_of(b) is None
