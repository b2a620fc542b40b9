"""Problems in the replay result (CONTRACT.md section 4), across a restart, and the
problem grouping score on the shared benchmark scenario when it is there."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest
from problemshop import DAY, T0, Shop, db_down, db_slow, write_config

import daemon.plugins  # noqa: F401 - registers the problems section of the result
from daemon.config import load_config
from daemon.problems.report import load_problems
from daemon.replay import run_replay
from daemon.timefmt import format_rfc3339

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "corr")


def events(alerts_at: list[tuple[float, list, str]]) -> str:
    lines = []
    for t, alerts, status in alerts_at:
        at = format_rfc3339(T0 + t)
        for labels, ann in alerts:
            alert = {"labels": labels, "annotations": ann, "startsAt": at, "status": status}
            if status == "resolved":
                alert["endsAt"] = at
            lines.append(json.dumps({"kind": "alert", "at": at, "alert": alert}))
    return "\n".join(lines) + "\n"


def test_replay_result_lists_problems_and_each_incidents_problem_id(tmp_path):
    seq = []
    for day in (0, 1, 2):
        seq += [(day * DAY, db_down(), "firing"), (day * DAY + 1800, db_down(), "resolved")]
    (tmp_path / "events.jsonl").write_text(events(seq))
    config = load_config(write_config(tmp_path))
    result = run_replay(config, str(tmp_path / "events.jsonl"), str(tmp_path / "result.json"))
    [problem] = result["problems"]
    assert {"id", "incidents", "root_cause", "signature"} <= set(problem)
    assert problem["root_cause"] == "shop-db"
    ids = [i["id"] for i in result["incidents"]]
    assert problem["incidents"] == ids and len(ids) == 3
    assert all(i["problem_id"] == problem["id"] for i in result["incidents"])
    assert json.loads((tmp_path / "result.json").read_text())["problems"] == result["problems"]


def test_problems_and_waiting_candidates_survive_a_restart(tmp_path):
    shop = Shop(tmp_path)
    first = shop.fault(0, db_down())
    shop.flush()
    shop.store.close()
    again = Shop(tmp_path)  # same store file: the first incident waits as a candidate
    again.clock.set(T0 + DAY)
    second = again.fault(DAY, db_down())
    pid = again.problem_of(second)
    assert pid is not None and again.problem_of(first) == pid
    again.problems.update(pid, {"cause": "disk"}, "bob", T0 + DAY)
    again.flush()
    again.store.close()
    third_run = Shop(tmp_path)
    third_run.clock.set(T0 + 2 * DAY)
    p = third_run.problems.get(pid)
    assert p.cause == "disk" and p.status == "known_error" and len(p.links) == 2
    third = third_run.fault(2 * DAY, db_down())
    assert third_run.problem_of(third) == pid


def _held(shop: Shop) -> dict[str, tuple]:
    """Each problem's links (in their order) and parts, as a restart must bring them back."""
    return {
        p.id: ([(i, ln.how, ln.root, ln.resolved_at, ln.profile) for i, ln in p.links.items()], p.parts)
        for p in shop.problems.listing()
    }


def _restarted(shop: Shop, tmp_path, day: float) -> Shop:
    shop.flush()
    shop.store.close()
    again = Shop(tmp_path)
    again.clock.set(T0 + day)
    return again


def test_each_linked_incident_is_a_row_of_its_own(tmp_path):
    """A new incident of a problem with a long history writes its own row, not the
    history again: the problem's document holds only the problem's own fields."""
    shop = Shop(tmp_path)
    incidents = [shop.fault(day * DAY, db_down()) for day in range(4)]
    shop.flush()
    [p] = shop.problems.listing()
    doc = json.loads(shop.store.query_one("SELECT doc FROM problems WHERE id=?", (p.id,))[0])
    assert "links" not in doc and "parts" not in doc and doc["title"] == p.title
    rows = shop.store.query("SELECT incident_id, problem_id, part, doc FROM problem_links ORDER BY pos")
    assert [r[0] for r in rows] == p.parts[0] and sorted(p.parts[0]) == sorted(incidents)
    assert {r[1] for r in rows} == {p.id} and {r[2] for r in rows} == {0}
    assert [json.loads(r[3]) for r in rows] == [p.links[r[0]].to_dict() for r in rows]


def test_merged_and_split_problems_survive_a_restart(tmp_path):
    shop = Shop(tmp_path)
    down = [shop.fault(i * DAY, db_down()) for i in range(2)]
    slow = [shop.fault((i + 2) * DAY, db_slow()) for i in range(2)]
    p_down, p_slow = shop.problem_of(down[0]), shop.problem_of(slow[0])
    shop.problems.merge(p_down, [p_slow], "bob", T0 + 4 * DAY)
    merged = _held(shop)
    assert len(merged[p_down][1]) == 2  # two parts
    shop = _restarted(shop, tmp_path, 4 * DAY)
    assert _held(shop) == merged
    assert shop.problem_of(shop.fault(5 * DAY, db_slow())) == p_down  # the parts still match
    new = shop.problems.split(p_down, [down[1]], "bob", T0 + 6 * DAY).id
    held = _held(shop)
    shop = _restarted(shop, tmp_path, 6 * DAY)
    assert _held(shop) == held and held[new][0][0][0] == down[1]
    # an incident taken out of a problem is no row of it
    iid = shop.fault(7 * DAY, db_slow())
    assert shop.problem_of(iid) == p_down
    shop.problems.link_incident(new, iid, "bob", T0 + 7 * DAY)
    held = _held(shop)
    shop = _restarted(shop, tmp_path, 7 * DAY)
    assert _held(shop) == held and iid in [x[0] for x in held[new][0]]


def test_a_store_that_kept_links_in_the_problem_document_is_read_and_rewritten(tmp_path):
    """Stores written before links had rows of their own hold them in the problem's
    document: they are read from there, and written as rows at the next commit."""
    shop = Shop(tmp_path)
    down = [shop.fault(i * DAY, db_down()) for i in range(2)]
    slow = [shop.fault((i + 2) * DAY, db_slow()) for i in range(2)]
    shop.problems.merge(shop.problem_of(down[0]), [shop.problem_of(slow[0])], "bob", T0 + 4 * DAY)
    held = _held(shop)
    shop.flush()
    shop.store.close()
    conn = sqlite3.connect(tmp_path / "store.sqlite3")
    for pid, doc in conn.execute("SELECT id, doc FROM problems").fetchall():
        d = json.loads(doc)
        rows = conn.execute("SELECT part, doc FROM problem_links WHERE problem_id=? ORDER BY part, pos",
                            (pid,)).fetchall()
        links = [json.loads(r[1]) for r in rows]
        d["links"] = sorted(links, key=lambda x: (x["opened_at"], x["incident_id"]))
        d["parts"] = [[x["incident_id"] for (part, _), x in zip(rows, links, strict=True) if part == k]
                      for k in sorted({r[0] for r in rows})]
        conn.execute("UPDATE problems SET doc=? WHERE id=?", (json.dumps(d), pid))
    conn.execute("DELETE FROM problem_links")
    conn.commit()
    conn.close()
    again = Shop(tmp_path)
    assert [len(p.links) for p in load_problems(again.store)] == [4]
    assert _held(again) == held
    again.flush()
    assert again.store.query_one("SELECT count(*) FROM problem_links") == (4,)
    again = _restarted(again, tmp_path, 4 * DAY)
    assert _held(again) == held
    [(doc,)] = again.store.query("SELECT doc FROM problems WHERE status != 'merged'")
    assert "links" not in json.loads(doc)


@pytest.mark.skipif(
    not os.path.isfile(os.path.join(SHARED, "score.py")), reason="../shared/corr not present"
)
def test_problem_grouping_on_the_benchmark_scenario(tmp_path):
    scenario = os.path.join(SHARED, "dev-sockshop")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"cmdb: [{os.path.abspath(os.path.join(scenario, 'cmdb.yaml'))}]\ndata_dir: data\n"
    )
    run_replay(
        load_config(str(cfg)), os.path.join(scenario, "events.jsonl"), str(tmp_path / "r.json")
    )
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(SHARED, "score.py"),
            "--truth",
            os.path.join(scenario, "truth.json"),
            "--result",
            str(tmp_path / "r.json"),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    scores = json.loads(out.stdout)
    assert scores["problems"]["f1"] >= 0.85, scores["problems"]


def test_the_known_problem_gauge_counts_the_open_incidents_a_restart_brings_back(tmp_path):
    shop = Shop(tmp_path)
    shop.fault(0, db_down())
    second = shop.fault(DAY, db_down())
    pid = shop.problem_of(second)
    shop.problems.update(pid, {"workaround": "fail over"}, "bob", T0 + DAY)
    shop.post(2 * DAY, db_down())  # open, and linked to the known problem at once
    gauge = shop.problems.m_open_known
    assert gauge._value.get() == 1
    shop.flush()
    shop.store.close()
    again = Shop(tmp_path)
    assert again.problems.m_open_known._value.get() == 1


@pytest.mark.skipif(
    not os.path.isfile(os.path.join(SHARED, "score.py")), reason="../shared/corr not present"
)
def test_replay_gives_the_same_problems_in_every_process(tmp_path):
    """Python salts string hashes per process: nothing may depend on a set's order, even
    with thresholds so strict that a last-digit difference in a similarity decides."""
    scenario = os.path.abspath(os.path.join(SHARED, "dev-sockshop"))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"cmdb: [{scenario}/cmdb.yaml]\nproblems: {{same_ci_threshold: 0.99, role_similarity: 0.01}}\n")
    runs = []
    for seed in ("1", "2", "3"):
        out = tmp_path / f"r{seed}.json"
        runs.append(subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "replay", "--config", str(cfg),
             "--input", f"{scenario}/events.jsonl", "--output", str(out)],
            env={**os.environ, "PYTHONHASHSEED": seed}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for run in runs:
        assert run.wait() == 0, run.stderr.read()
    first, *others = [(tmp_path / f"r{seed}.json").read_bytes() for seed in ("1", "2", "3")]
    assert all(other == first for other in others)
