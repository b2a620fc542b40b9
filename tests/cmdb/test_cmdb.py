from __future__ import annotations

import textwrap

import pytest

from cmdb import CmdbError, CmdbHolder, load_cmdb, load_cmdb_docs, validate_cmdb
from cmdb.graph import describe_path


def write(tmp_path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return str(p)


SHOP = """
cis:
  - id: shop
    type: business_service
    criticality: critical
    match: {slo: shop}
    depends_on: [checkout]
  - id: checkout
    criticality: high
    owner: team-shop
    tier: 1
    match: {service: checkout}
    depends_on: [payments, orders-db]
    runs_on: host-1
  - id: payments
    matches:
      - {service: payments}
      - ['job=~"pay(ments)?-exporter"', 'env!="dev"']
    depends_on: [orders-db]
  - id: orders-db
    type: database
    match: {service: orders-db}
    runs_on: [host-1]
  - id: host-1
    type: host
    match: {node: host-1}
    attrs: {rack: r12}
"""


def test_loads_graph_with_relations_and_attributes(tmp_path):
    cmdb = load_cmdb([write(tmp_path, "c.yaml", SHOP)])
    assert len(cmdb) == 5
    assert cmdb.relation("checkout", "host-1") == "runs_on"
    assert cmdb.cis["shop"].business_service
    assert cmdb.cis["checkout"].tier == 1 and cmdb.cis["host-1"].attrs == {"rack": "r12"}
    assert cmdb.dependencies("shop") == {"checkout": 1, "payments": 2, "orders-db": 2, "host-1": 2}
    assert cmdb.dependents("orders-db", hops=1) == {"checkout": 1, "payments": 1}


def test_most_specific_match_wins_and_regex_blocks(tmp_path):
    cmdb = load_cmdb([write(tmp_path, "c.yaml", SHOP + """
  - id: checkout-canary
    match: {service: checkout, track: canary}
""")])
    assert cmdb.ci_for({"service": "checkout", "alertname": "X"}) == "checkout"
    assert cmdb.ci_for({"service": "checkout", "track": "canary"}) == "checkout-canary"
    assert cmdb.ci_for({"job": "pay-exporter", "env": "prod"}) == "payments"
    assert cmdb.ci_for({"job": "pay-exporter", "env": "dev"}) is None
    assert cmdb.ci_for({"service": "unknown"}) is None


def test_the_block_with_the_most_labels_wins_not_the_one_with_the_most_matchers(tmp_path):
    """A namespace's catch-all that leaves out two services has three matchers on two
    labels; the web service's block has two labels too, both equalities: web's alerts
    are web's. Equally specific blocks go to the CI defined first."""
    cmdb = load_cmdb([write(tmp_path, "c.yaml", """
    cis:
      - id: shop-other
        match: ['namespace="shop"', 'service!="db"', 'service!="cache"']
      - id: web
        match: {namespace: shop, service: web}
      - id: mail
        match: {namespace: shop, service: mail}
      - id: mail-again
        match: {service: mail, namespace: shop}
    """)])
    assert cmdb.ci_for({"namespace": "shop", "service": "web"}) == "web"
    assert cmdb.ci_for({"namespace": "shop", "service": "queue"}) == "shop-other"
    assert cmdb.ci_for({"namespace": "shop", "service": "mail"}) == "mail"


def test_match_strings_may_be_selectors_in_braces(tmp_path):
    cmdb = load_cmdb([write(tmp_path, "c.yaml", """
    cis:
      - {id: web, match: ['{service="web"}', '{env!="dev"}']}
      - {id: api, match: '{service="api", env!="dev"}'}
    """)])
    assert cmdb.ci_for({"service": "web", "env": "prod"}) == "web"
    assert cmdb.ci_for({"service": "web", "env": "dev"}) is None
    assert cmdb.ci_for({"service": "api"}) == "api"


def test_regex_escapes_in_match_strings_reach_the_regex(tmp_path):
    cmdb = load_cmdb([write(tmp_path, "c.yaml", r"""
    cis:
      - id: hosts
        match: ['instance=~"host-\d+\.prod"']
    """)])
    assert cmdb.ci_for({"instance": "host-12.prod"}) == "hosts"
    assert cmdb.ci_for({"instance": "host-dd.prod"}) is None


def test_match_values_yaml_reads_as_booleans_or_numbers_match_as_written(tmp_path):
    # YAML reads `true`, `no`, `1.10`, `012` and dates as other types: str() of them
    # ("True", "False", "1.1", "10") is not the label the file means. As in Alertmanager
    # (Go's YAML gives a string field the text as written), the value is what is written.
    cmdb = load_cmdb([write(tmp_path, "c.yaml", """
    cis:
      - {id: canary, match: {service: web, canary: true}}
      - {id: v110, match: {service: web, version: 1.10}}
      - {id: norway, match: {country: no}}
      - {id: octal, match: {rack: 012}}
      - {id: dated, match: {release: 2024-03-01}}
      - {id: exporter, match: {port: 9100}}
    """)])
    assert cmdb.ci_for({"service": "web", "canary": "true"}) == "canary"
    assert cmdb.ci_for({"service": "web", "version": "1.10"}) == "v110"
    assert cmdb.ci_for({"country": "no"}) == "norway"
    assert cmdb.ci_for({"rack": "012"}) == "octal"
    assert cmdb.ci_for({"release": "2024-03-01"}) == "dated"
    assert cmdb.ci_for({"port": "9100"}) == "exporter"
    assert cmdb.ci_for({"service": "web", "canary": "True"}) is None


def test_match_values_that_are_not_text_from_a_file_are_errors():
    from rules.matchers import MatcherError, parse_matchers

    assert [str(m) for m in parse_matchers({"port": 9100})] == ['port="9100"']
    for value in (True, 1.1, None, [1]):  # from JSON, say: no written form to go by
        with pytest.raises(MatcherError):
            parse_matchers({"x": value})


def test_errors_carry_file_and_line(tmp_path):
    path = write(tmp_path, "bad.yaml", """
    cis:
      - id: a
        depends_on: [nope]
      - id: a
      - id: b
        match: ['x=~"("']
      - id: c
        criticality: urgent
    """)
    errors = validate_cmdb([path])
    text = "\n".join(errors)
    assert f"{path}:4: CI 'a': `depends_on` refers to unknown CI 'nope'" in text
    assert f"{path}:5: duplicate CI id 'a'" in text
    assert f"{path}:7: CI 'b': bad matcher" in text
    assert f"{path}:9: CI 'c': criticality must be one of" in text
    with pytest.raises(CmdbError):
        load_cmdb([path])


def test_x_keys_hold_anchors_for_the_cis_and_other_keys_are_errors(tmp_path):
    path = write(tmp_path, "cmdb.yaml", """
    x-service: &service {type: service, owner: team-shop, criticality: high}
    cis:
      - {<<: *service, id: web, match: {service: web}}
      - {<<: *service, id: api, match: {service: api}}
    """)
    cmdb = load_cmdb([path])
    assert (cmdb.cis["api"].owner, cmdb.cis["api"].criticality_rank) == ("team-shop", cmdb.cis["web"].criticality_rank)
    bad = write(tmp_path, "bad.yaml", "defaults: {type: service}\ncis: []\n")
    assert validate_cmdb([bad]) == [f"{bad}:1: unknown key 'defaults' (expected cis, relations, or x-...)"]
    scalar = write(tmp_path, "scalar.yaml", "just a string\n")
    assert validate_cmdb([scalar]) == [f"{scalar}:1: a CMDB file must be a mapping with a `cis` list"]
    listed = write(tmp_path, "list.yaml", "- id: web\n- id: db\n")
    assert validate_cmdb([listed]) == [f"{listed}:1: a CMDB file must be a mapping with a `cis` list"]


def test_several_files_merge_and_refer_to_each_other(tmp_path):
    a = write(tmp_path, "a.yaml", "cis:\n  - id: app\n    depends_on: [db]\n")
    b = write(tmp_path, "b.yaml", "cis:\n  - id: db\nrelations:\n  - {from: app, to: db, type: connects_to}\n")
    cmdb = load_cmdb([a, b])
    assert cmdb.depends_on("app") == ["db"]
    dup = write(tmp_path, "c.yaml", "cis:\n  - id: db\n")
    assert any("duplicate CI id 'db'" in e for e in validate_cmdb([a, b, dup]))


def test_cycles_are_legal_and_queries_terminate(tmp_path):
    cmdb = load_cmdb([write(tmp_path, "c.yaml", """
    cis:
      - {id: a, depends_on: [b]}
      - {id: b, depends_on: [c]}
      - {id: c, depends_on: [a]}
    """)])
    assert cmdb.dependencies("a") == {"b": 1, "c": 2}
    assert cmdb.dependents("a") == {"c": 1, "b": 2}
    assert [s.dst for s in cmdb.dependency_path("a", "c", 3)] == ["b", "c"]


def test_dependency_path_goes_down_the_dependencies_only(tmp_path):
    cmdb = load_cmdb([write(tmp_path, "c.yaml", SHOP)])
    steps = cmdb.dependency_path("shop", "host-1")
    assert [(s.src, s.relation, s.dst) for s in steps] == [("shop", "depends_on", "checkout"),
                                                          ("checkout", "runs_on", "host-1")]
    assert cmdb.dependency_path("shop", "host-1", 1) is None  # beyond the bound
    assert cmdb.dependency_path("host-1", "shop") is None  # the host does not depend on the shop
    assert cmdb.dependency_path("orders-db", "payments") is None  # payments depends on it, not it on payments
    assert len(cmdb.dependency_path("payments", "host-1")) == 2  # via orders-db
    assert cmdb.dependency_path("shop", "shop") == []


def test_reload_keeps_old_cmdb_when_new_one_is_bad(tmp_path):
    path = write(tmp_path, "c.yaml", SHOP)
    holder = CmdbHolder([path])
    holder.load()
    old = holder.cmdb
    (tmp_path / "c.yaml").write_text("cis:\n  - id: x\n    depends_on: [missing]\n")
    assert holder.reload() is False
    assert holder.cmdb is old and not holder.last_reload_ok
    assert "refers to unknown CI 'missing'" in holder.last_error
    (tmp_path / "c.yaml").write_text("cis:\n  - id: x\n")
    assert holder.reload() is True
    assert list(holder.cmdb.cis) == ["x"] and holder.last_reload_ok


def test_dependency_missing_in_one_cluster_is_inferred_from_another():
    from cmdb.drift import INFERRED

    def svc(cid, cluster, service, deps, type_="service"):
        return {"id": cid, "type": type_, "match": {"cluster": cluster, "service": service}, "depends_on": deps}

    cmdb = load_cmdb_docs([("t.yaml", {"cis": [
        svc("carts.a", "a", "carts", ["carts-db.a"]), svc("carts-db.a", "a", "carts-db", [], "database"),
        svc("carts.b", "b", "carts", []), svc("carts-db.b", "b", "carts-db", [], "database"),
        svc("web.a", "a", "web", ["carts.a"]), svc("web.b", "b", "web", ["carts.b"]),
        {"id": "node-1", "type": "host", "match": {"cluster": "a", "node": "n1"}},
    ]})])
    assert cmdb.relation("carts.b", "carts-db.b") == INFERRED
    assert cmdb.relation("carts.a", "carts-db.a") == "depends_on"
    assert "inferred" in describe_path(cmdb.dependency_path("carts.b", "carts-db.b", 2))


def test_inference_still_works_when_every_service_name_recurs_in_many_clusters():
    """Twelve clusters of one shop: each service name is carried by twelve CIs, as a
    partition label's values are; but dependencies connect different services, so the
    service label is the role and the cluster the partition."""
    from cmdb.drift import INFERRED

    cis = []
    for c in range(12):
        cl = f"c{c}"
        nodes = [f"node-{n}.{cl}" for n in range(4)]
        cis += [{"id": n, "type": "host", "match": {"cluster": cl, "node": n}} for n in nodes]
        for i, (name, deps) in enumerate((("web", ["carts", "orders"]), ("carts", ["carts-db"]),
                                          ("orders", ["orders-db"]), ("catalogue", []),
                                          ("carts-db", []), ("orders-db", []))):
            if cl == "c5" and name == "carts":
                deps = []  # forgotten in one cluster
            cis.append({"id": f"{name}.{cl}", "type": "database" if name.endswith("-db") else "service",
                        "match": {"cluster": cl, "service": name},
                        "depends_on": [f"{d}.{cl}" for d in deps] + [nodes[i % 4]]})
    cmdb = load_cmdb_docs([("t.yaml", {"cis": cis})])
    assert cmdb.relation("carts.c5", "carts-db.c5") == INFERRED
    assert sum(1 for *_, r in cmdb.graph.edges(data="relation") if r == INFERRED) == 1


def test_clusters_recorded_with_different_dependencies_are_not_made_alike():
    """Four clusters run different versions of the shop: carts uses redis in one of
    them only. One cluster in four is too few to call the others stale."""
    from cmdb.drift import partition_labels

    cis = []
    for cl in ("a", "b", "c", "d"):
        cis += [{"id": f"{n}.{cl}", "match": {"cluster": cl, "service": n},
                 "depends_on": [f"redis.{cl}"] if (n, cl) == ("carts", "a") else []}
                for n in ("carts", "redis", "web", "orders", "user", "user-db", "payment", "shipping",
                          "catalogue", "queue")]
    cmdb = load_cmdb_docs([("t.yaml", {"cis": cis})])
    assert partition_labels(cmdb.cis, cmdb.graph) == {"cluster"}
    assert [cmdb.relation(f"carts.{cl}", f"redis.{cl}") for cl in "bcd"] == [None, None, None]


def test_deployments_that_record_other_dependencies_are_not_stale_records():
    """Three clusters whose front-ends call different services (a design that differs
    per cluster, not a forgotten edge): nothing is inferred between them. Where a
    cluster records nothing for `orders`, its `orders-db` edge was forgotten."""
    from cmdb.drift import INFERRED

    calls = {"a": ["s1", "s2"], "b": ["s3", "s4"], "c": ["s5", "s6"]}
    cis = []
    for cl, called in calls.items():
        cis += [{"id": f"{n}.{cl}", "match": {"cluster": cl, "service": n},
                 "depends_on": [f"{d}.{cl}" for d in (called if n == "web" else
                                                      ["orders-db"] if n == "orders" and cl != "c" else [])]}
                for n in ("web", "s1", "s2", "s3", "s4", "s5", "s6", "orders", "orders-db", "queue")]
    cmdb = load_cmdb_docs([("t.yaml", {"cis": cis})])
    inferred = sorted((a, b) for a, b, r in cmdb.graph.edges(data="relation") if r == INFERRED)
    assert inferred == [("orders.c", "orders-db.c")]


def test_attrs_that_hold_themselves_are_an_error(tmp_path):
    path = tmp_path / "cmdb.yaml"
    path.write_text("cis:\n  - id: a\n    attrs: &me {self: *me}\n")
    assert validate_cmdb([str(path)]) == [
        f"{path}:3: CI 'a': `attrs` hold themselves (a YAML alias inside its own anchor)"]


def test_the_dependencies_a_cmdb_could_lack_are_of_kinds_it_records_within_a_cluster():
    """Three clusters of services on databases and hosts: a service could depend on
    another service, a database or a host of its own cluster without the CMDB saying so;
    not on a CI of another cluster, and a database or a host never on a service."""
    from cmdb.drift import DependencyShapes

    cis = []
    for c in range(3):
        cl = f"c{c}"
        cis.append({"id": f"node.{cl}", "type": "host", "match": {"cluster": cl, "node": f"n.{cl}"}})
        for name, deps in (("web", ["carts"]), ("carts", ["carts-db"]), ("orders", []), ("carts-db", []),
                           ("user", []), ("payment", []), ("shipping", []), ("catalogue", []), ("queue", [])):
            cis.append({"id": f"{name}.{cl}", "type": "database" if name.endswith("-db") else "service",
                        "match": {"cluster": cl, "service": name},
                        "depends_on": [f"{d}.{cl}" for d in deps] + [f"node.{cl}"]})
    cmdb = load_cmdb_docs([("t.yaml", {"cis": cis})])
    shapes = DependencyShapes(cmdb.cis, cmdb.graph)
    assert shapes.could_depend("orders.c1", "carts.c1")  # service -> service
    assert shapes.could_depend("orders.c1", "carts-db.c1")  # service -> database
    assert not shapes.could_depend("orders.c1", "carts.c2")  # another cluster
    assert not shapes.could_depend("carts-db.c1", "orders.c1")  # a database on a service: never recorded
    assert not shapes.could_depend("node.c1", "web.c1")  # nor a host on a service
    assert not shapes.could_depend("orders.c1", "orders.c1") and not shapes.could_depend("orders.c1", "gone")


def _named_shop(extra: list[dict] | None = None) -> list[dict]:
    """Two clusters of a shop whose CMDB lost `carts -> carts-db` in both (nothing to
    infer it from), `orders -> orders-db` recorded."""

    def ci(name, cluster, deps=(), type_="service"):
        return {"id": f"{name}.{cluster}", "type": type_, "match": {"cluster": cluster, "service": name},
                "depends_on": [f"{d}.{cluster}" for d in deps]}

    cis = []
    for cl in ("eu", "us"):
        cis += [ci("web", cl, ["carts", "orders"]), ci("carts", cl), ci("orders", cl, ["orders-db"]),
                ci("carts-db", cl, type_="database"), ci("orders-db", cl, type_="database")]
    return cis + (extra or [])


def test_a_datastore_nothing_uses_is_inferred_to_belong_to_the_service_it_is_named_after():
    from cmdb.drift import NAMED

    cmdb = load_cmdb_docs([("t.yaml", {"cis": _named_shop()})])
    assert cmdb.relation("carts.eu", "carts-db.eu") == NAMED
    assert cmdb.relation("carts.us", "carts-db.us") == NAMED
    assert cmdb.relation("carts.eu", "carts-db.us") is None  # never across clusters
    why = describe_path(cmdb.dependency_path("web.eu", "carts-db.eu", 3))
    assert "carts.eu depends_on carts-db.eu (inferred: named after carts.eu" in why
    named = sorted((a, b) for a, b, r in cmdb.graph.edges(data="relation") if r == NAMED)
    assert named == [("carts.eu", "carts-db.eu"), ("carts.us", "carts-db.us")]
    # the records alone, as `check-config` and the API's raw view read them
    assert load_cmdb_docs([("t.yaml", {"cis": _named_shop()})], infer_edges=False).relation(
        "carts.eu", "carts-db.eu") is None


def test_names_alone_infer_nothing_for_a_used_datastore_a_peer_service_or_an_unrecorded_kind():
    from cmdb.drift import NAMED

    # carts-db is used by someone (a report job): its users are recorded
    used = _named_shop([{"id": "report.eu", "match": {"cluster": "eu", "service": "report"},
                         "depends_on": ["carts-db.eu"]}])
    cmdb = load_cmdb_docs([("t.yaml", {"cis": used})])
    assert cmdb.relation("carts.eu", "carts-db.eu") is None
    assert cmdb.relation("carts.us", "carts-db.us") == NAMED
    # a worker named after a service is a service of its own, not a part of it
    worker = _named_shop([{"id": "orders-worker.eu", "match": {"cluster": "eu", "service": "orders-worker"}}])
    cmdb = load_cmdb_docs([("t.yaml", {"cis": worker})])
    assert cmdb.relation("orders.eu", "orders-worker.eu") is None
    # nothing records a service using a database: no kind of dependency to infer
    bare = [dict(c, depends_on=[]) if c["id"].startswith("orders.") else c for c in _named_shop()]
    cmdb = load_cmdb_docs([("t.yaml", {"cis": bare})])
    assert not [r for *_, r in cmdb.graph.edges(data="relation") if r == NAMED]


def test_the_longest_name_a_datastore_begins_with_names_its_service():
    from cmdb.drift import NAMED

    cis = [{"id": "user", "depends_on": ["user-db"]}, {"id": "user-db", "type": "database"},
           {"id": "user-profile"}, {"id": "user-profile-db", "type": "database"},
           {"id": "cart"}, {"id": "carts-db", "type": "database"}]  # no word-for-word match
    cmdb = load_cmdb_docs([("t.yaml", {"cis": cis})])
    assert cmdb.relation("user-profile", "user-profile-db") == NAMED
    assert cmdb.relation("user", "user-profile-db") is None
    assert cmdb.relation("cart", "carts-db") is None
