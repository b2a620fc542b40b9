"""The CMDB in a running daemon: `GET /api/v1/cmdb/cis/{id}` over real HTTP, and
reload (a bad file keeps the old graph, a good one is taken, open incidents stay)."""

import asyncio
import json
import threading
import time
import weakref

import pytest
from harness import write_config

from cmdb import loader

GOOD = """
cis:
  - {id: shop, type: business_service, criticality: critical, match: {slo: shop}, depends_on: [web]}
  - {id: web, match: {service: web}, depends_on: [db]}
  - {id: db, type: database, match: {service: db}, depends_on: [host-1]}
  - {id: host-1, type: host, match: {instance: host-1}}
"""


def alert(name: str, **labels: str) -> dict:
    return {"labels": {"alertname": name, "severity": "critical", **labels}, "annotations": {}}


async def test_ci_view_shows_dependencies_dependents_and_open_incidents(tmp_path, daemon_for):
    (tmp_path / "cmdb.yaml").write_text(GOOD)
    c = await daemon_for(write_config(tmp_path, "cmdb: [cmdb.yaml]\n"))
    await c.post_alerts(alert("MysqlDown", service="db"), alert("HighErrorRate", service="web"))
    [inc] = await c.incidents(1)
    assert inc["root_cause"] == "db"

    status, ci = await c.call("GET", "/api/v1/cmdb/cis/db")
    assert status == 200 and ci["id"] == "db" and ci["type"] == "database"
    assert [d["ci"] for d in ci["dependencies"]] == ["host-1"]
    assert [d["ci"] for d in ci["dependents"]] == ["web"]
    assert [(i["id"], i["role"]) for i in ci["open_incidents"]] == [(inc["id"], "root_cause")]
    status, ci = await c.call("GET", "/api/v1/cmdb/cis/web")
    assert [(i["id"], i["role"]) for i in ci["open_incidents"]] == [(inc["id"], "alerting")]
    status, ci = await c.call("GET", "/api/v1/cmdb/cis/shop")  # the fault has not reached it
    assert ci["open_incidents"] == []

    status, body = await c.call("GET", "/api/v1/cmdb/cis/nope")
    assert status == 404 and body["error"] == "no such CI"
    status, body = await c.call("GET", "/api/v1/cmdb/cis/db?hops=x")
    assert status == 400


async def test_ci_ids_with_slashes_are_found_written_either_way(tmp_path, daemon_for):
    """`k8s/prod/api` is a usual CI id; clients (and proxies that decode `%2F`) send its
    slashes as they are."""
    (tmp_path / "cmdb.yaml").write_text(GOOD + "  - {id: k8s/prod/api, match: {service: api}, depends_on: [db]}\n")
    c = await daemon_for(write_config(tmp_path, "cmdb: [cmdb.yaml]\n"))
    for path in ("k8s/prod/api", "k8s%2Fprod%2Fapi"):
        status, ci = await c.call("GET", f"/api/v1/cmdb/cis/{path}")
        assert status == 200 and ci["id"] == "k8s/prod/api", path
    status, ci = await c.call("GET", "/api/v1/cmdb/cis/db")
    assert [d["ci"] for d in ci["dependents"]] == ["k8s/prod/api", "web"]
    status, body = await c.call("GET", "/api/v1/cmdb/cis/k8s/prod/nope")
    assert status == 404 and body == {"error": "no such CI", "detail": "k8s/prod/nope"}


async def test_ci_view_shows_attributes_yaml_reads_as_dates_or_odd_numbers_as_json(tmp_path, daemon_for):
    (tmp_path / "cmdb.yaml").write_text(GOOD + "  - {id: host-2, type: host, attrs: {installed: 2024-03-01,"
                                        " rack: r12, load: .nan, cap: -.inf, 2024-01-01: [1, {x: 2}]}}\n")
    c = await daemon_for(write_config(tmp_path, "cmdb: [cmdb.yaml]\n"))
    async with c.session.get(c.base + "/api/v1/cmdb/cis/host-2") as resp:
        assert resp.status == 200
        ci = json.loads(await resp.text(), parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert ci["attrs"] == {"installed": "2024-03-01", "rack": "r12", "load": "nan", "cap": "-inf",
                           "2024-01-01": [1, {"x": 2}]}



async def test_reload_keeps_the_old_graph_on_error_and_takes_a_good_one(tmp_path, daemon_for):
    path = tmp_path / "cmdb.yaml"
    path.write_text(GOOD)
    c = await daemon_for(write_config(tmp_path, "cmdb: [cmdb.yaml]\n"))
    await c.post_alerts(alert("MysqlDown", service="db"))
    [inc] = await c.incidents(1)

    path.write_text(GOOD + "  - {id: cache, depends_on: [nowhere]}\n")
    status, body = await c.call("POST", "/-/reload")
    assert status == 400 and not body["ok"]
    assert any("cmdb.yaml:7:" in e and "nowhere" in e for e in body["components"]["cmdb"]["errors"])
    assert await c.metric("incidentd_config_last_reload_successful") == 0
    assert await c.metric("incidentd_cmdb_last_reload_successful") == 0
    status, _ = await c.call("GET", "/api/v1/cmdb/cis/cache")
    assert status == 404  # the old graph is still the live one
    status, ci = await c.call("GET", "/api/v1/cmdb/cis/db")
    assert status == 200 and ci["open_incidents"][0]["id"] == inc["id"]

    old = weakref.ref(c.daemon.components.parts["cmdb"].holder.cmdb.graph)
    path.write_text(GOOD + "  - {id: cache, type: cache, match: {service: cache}, depends_on: [host-1]}\n")
    status, body = await c.call("POST", "/-/reload")
    assert status == 200 and body["ok"]
    # the replaced graph is freed, though start-up froze it out of the collector's passes
    # and a networkx graph refers to itself through its views
    assert old() is None
    assert await c.metric("incidentd_config_last_reload_successful") == 1
    status, ci = await c.call("GET", "/api/v1/cmdb/cis/host-1")
    assert {d["ci"] for d in ci["dependents"]} == {"db", "cache"}
    [still] = await c.incidents(1, state="open")
    assert still["id"] == inc["id"]
    # the new CI takes part in correlation at once
    await c.post_alerts(alert("RedisDown", service="cache"))
    status, doc = await c.call("GET", f"/api/v1/incidents/{inc['id']}")
    assert status == 200


async def test_a_reload_of_an_emptied_file_keeps_the_graph(tmp_path, daemon_for):
    """An export cut short leaves an empty file (or one with only its header comment):
    taking it would drop every CI and dependency at once."""
    path = tmp_path / "cmdb.yaml"
    path.write_text(GOOD)
    c = await daemon_for(write_config(tmp_path, "cmdb: [cmdb.yaml]\n"))
    for text in ("", "# CMDB export\n"):
        path.write_text(text)
        status, body = await c.call("POST", "/-/reload")
        assert status == 400 and body["components"]["cmdb"]["errors"] == [f"{path}:1: the file is empty (a CMDB without CIs is `cis: []`)"]
        assert await c.metric("incidentd_cmdb_last_reload_successful") == 0
        status, ci = await c.call("GET", "/api/v1/cmdb/cis/db")
        assert status == 200 and [d["ci"] for d in ci["dependents"]] == ["web"]
        status, cmdb = await c.call("GET", "/api/v1/cmdb")
        assert cmdb["cis"] == 4 and "the file is empty" in cmdb["last_error"]
    path.write_text("cis: []\n")  # a CMDB without CIs, said so
    status, body = await c.call("POST", "/-/reload")
    assert status == 200 and (await c.call("GET", "/api/v1/cmdb"))[1]["cis"] == 0


async def test_a_reload_of_a_file_nested_too_deeply_is_a_reported_error(tmp_path, daemon_for):
    path = tmp_path / "cmdb.yaml"
    path.write_text(GOOD)
    c = await daemon_for(write_config(tmp_path, "cmdb: [cmdb.yaml]\n"))
    path.write_text(GOOD + "  - {id: cache, attrs: {x: " + "[" * 2000 + "]" * 2000 + "}}\n")
    status, body = await c.call("POST", "/-/reload")
    assert status == 400 and body["components"]["cmdb"]["errors"] == [
        f"{path}:7: invalid YAML: values nested too deeply"]
    assert await c.metric("incidentd_cmdb_last_reload_successful") == 0
    assert (await c.call("GET", "/api/v1/cmdb"))[1]["cis"] == 4


async def test_a_reload_that_finds_the_file_gone_is_a_failed_cmdb_reload(tmp_path, daemon_for):
    path = tmp_path / "cmdb.yaml"
    path.write_text(GOOD)
    c = await daemon_for(write_config(tmp_path, "cmdb: [cmdb.yaml]\n"))
    path.rename(tmp_path / "cmdb.yaml.old")
    status, body = await c.call("POST", "/-/reload")
    assert status == 400 and body["components"]["cmdb"]["errors"] == [
        f"{tmp_path / 'config.yaml'}:2: cmdb file not found: {path}"]
    assert await c.metric("incidentd_cmdb_last_reload_successful") == 0
    status, cmdb = await c.call("GET", "/api/v1/cmdb")
    assert cmdb["cis"] == 4 and not cmdb["last_reload_successful"] and "not found" in cmdb["last_error"]


async def test_reload_takes_the_files_the_config_names_now(tmp_path, daemon_for):
    (tmp_path / "cmdb.yaml").write_text(GOOD)
    (tmp_path / "extra.yaml").write_text("cis:\n  - {id: cache, type: cache, match: {service: cache}}\n")
    (tmp_path / "extra_bad.yaml").write_text("cis:\n  - {id: queue, depends_on: [nowhere]}\n")
    config = write_config(tmp_path, "cmdb: [cmdb.yaml]\n")
    c = await daemon_for(config)
    text = open(config).read()

    # a file added to the config's list: its CIs are live after the reload
    open(config, "w").write(text.replace("cmdb: [cmdb.yaml]", "cmdb: [cmdb.yaml, extra.yaml]"))
    status, body = await c.call("POST", "/-/reload")
    assert status == 200 and body["ok"]
    assert (await c.call("GET", "/api/v1/cmdb/cis/cache"))[0] == 200

    # a bad file in the list, or a config that no longer reads: the running CMDB stays
    open(config, "w").write(text.replace("cmdb: [cmdb.yaml]", "cmdb: [cmdb.yaml, extra_bad.yaml]"))
    status, body = await c.call("POST", "/-/reload")
    assert status == 400 and "nowhere" in " ".join(body["components"]["cmdb"]["errors"])
    open(config, "w").write(text.replace("cmdb: [cmdb.yaml]", "cmdb: [cmdb.yaml, extra.yaml]\nincidents: 3"))
    status, body = await c.call("POST", "/-/reload")
    assert status == 400 and "incidents must be a mapping" in body["components"]["config"]["errors"][0]
    assert (await c.call("GET", "/api/v1/cmdb/cis/cache"))[0] == 200
    assert (await c.call("GET", "/api/v1/cmdb/cis/queue"))[0] == 404
    assert await c.metric("incidentd_config_last_reload_successful") == 0


async def test_a_reload_builds_the_new_cmdb_while_the_daemon_goes_on_serving(tmp_path, daemon_for, monkeypatch):
    """Building a CMDB of tens of thousands of CIs takes seconds: meanwhile the daemon
    answers requests and correlates alerts on the graph it has."""
    path = tmp_path / "cmdb.yaml"
    path.write_text(GOOD)
    c = await daemon_for(write_config(tmp_path, "cmdb: [cmdb.yaml]\n"))
    building, served = threading.Event(), threading.Event()
    waited: list[bool] = []
    build = loader._Loaded

    def slow_build(paths):
        building.set()
        waited.append(served.wait(5))  # the build lasts until a request was served meanwhile
        return build(paths)

    monkeypatch.setattr(loader, "_Loaded", slow_build)
    path.write_text(GOOD + "  - {id: cache, type: cache, match: {service: cache}, depends_on: [host-1]}\n")
    reload = asyncio.create_task(c.call("POST", "/-/reload"))
    while not building.is_set():
        await asyncio.sleep(0.01)
    assert (await c.call("GET", "/healthz"))[0] == 200
    await c.post_alerts(alert("MysqlDown", service="db"))
    [inc] = await c.incidents(1)
    assert inc["root_cause"] == "db"
    served.set()
    status, body = await reload
    assert waited == [True], "the daemon served nothing while the new CMDB was built"
    assert status == 200 and body["ok"]
    assert (await c.call("GET", "/api/v1/cmdb/cis/cache"))[0] == 200


async def test_reloads_at_once_take_turns(tmp_path, daemon_for, monkeypatch):
    """A SIGHUP during a `POST /-/reload` waits for it (and finds the CMDB it built)."""
    path = tmp_path / "cmdb.yaml"
    path.write_text(GOOD)
    c = await daemon_for(write_config(tmp_path, "cmdb: [cmdb.yaml]\n"))
    active, most = [0], [0]
    build = loader._Loaded

    def counted_build(paths):
        active[0] += 1
        most[0] = max(most[0], active[0])
        time.sleep(0.2)
        try:
            return build(paths)
        finally:
            active[0] -= 1

    monkeypatch.setattr(loader, "_Loaded", counted_build)
    path.write_text(GOOD + "  - {id: cache, type: cache, match: {service: cache}, depends_on: [host-1]}\n")
    answers = await asyncio.gather(*(c.call("POST", "/-/reload") for _ in range(3)))
    assert [status for status, _ in answers] == [200, 200, 200]
    assert most == [1]
    assert (await c.call("GET", "/api/v1/cmdb/cis/cache"))[0] == 200
