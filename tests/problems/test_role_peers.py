"""Structural role peers (CIs of one type without a role attribute and nearly the same
neighbours) are the CIs a brute-force Jaccard comparison with every CI finds."""

import random

from daemon.build import build_pipeline
from daemon.clock import VirtualClock
from daemon.config import load_config
from daemon.metrics import Metrics


def random_cmdb(rng: random.Random) -> tuple[str, dict[str, tuple[str, set[str], bool]]]:
    """A CMDB: services depending on hosts of a few pools, hosts on switches, some hosts
    with a role; the text and, by CI, its type, neighbours and whether it has a role."""
    cis: dict[str, tuple[str, set[str], bool]] = {}
    lines = ["cis:"]
    switches = [f"sw-{i}" for i in range(4)]
    hosts = [f"h-{i}" for i in range(60)]
    services = [f"svc-{i}" for i in range(25)]
    for sw in switches:
        cis[sw] = ("switch", set(), False)
    for h in hosts:
        role = rng.random() < 0.2
        deps = set(rng.sample(switches, rng.randint(0, 2)))
        cis[h] = ("host", deps, role)
    for s in services:
        base = rng.randrange(0, 50)
        deps = {hosts[base + d] for d in range(10) if rng.random() < 0.6}
        cis[s] = ("service", deps, False)
    for ci, (ctype, deps, role) in cis.items():
        attrs = ", attrs: {role: web}" if role else ""
        lines.append(
            f"  - {{id: {ci}, type: {ctype}, match: {{node: {ci}}}, depends_on: [{', '.join(sorted(deps))}]{attrs}}}"
        )
    neighbours = {ci: set(deps) for ci, (_t, deps, _r) in cis.items()}
    for ci, (_t, deps, _r) in cis.items():
        for d in deps:
            neighbours[d].add(ci)
    return "\n".join(lines) + "\n", {ci: (t, neighbours[ci], r) for ci, (t, _d, r) in cis.items()}


def brute_force(cis: dict[str, tuple[str, set[str], bool]], a: str, need: float) -> set[str]:
    ta, na, _ = cis[a]
    found = set()
    for b, (tb, nb, role) in cis.items():
        if b == a or tb != ta or role or not na:
            continue
        common = len(na & nb)
        if common / (len(na) + len(nb) - common) >= need:
            found.add(b)
    return found


def role_peers(part, a: str) -> set[str]:
    """The CIs interchangeable with `a` (but `a`), by the problems part's classes."""
    k = part.key(a)
    classes = part.peers(k) if k is not None else frozenset()
    return {b for b in part._cmdb().cis if b != a and part.key(b) in classes}


def test_structural_peers_are_those_a_comparison_with_every_ci_finds(tmp_path):
    rng = random.Random(3)
    text, cis = random_cmdb(rng)
    (tmp_path / "cmdb.yaml").write_text(text)
    checked = with_peers = 0
    for need in (1.0, 0.8, 0.5, 0.34, 0.2, 0.05):
        cfg = tmp_path / "config.yaml"
        cfg.write_text(
            f"data_dir: data\ncmdb: [cmdb.yaml]\nproblems: {{role_similarity: {need}}}\n"
        )
        parts = build_pipeline(load_config(str(cfg)), VirtualClock(0.0), Metrics(), None).parts
        part = parts["problems"]
        for ci, (_t, _n, role) in cis.items():
            if role:
                continue
            got = role_peers(part, ci)
            assert got == brute_force(cis, ci, need), (need, ci)
            checked += 1
            with_peers += bool(got)
    assert with_peers > 50 and checked > with_peers  # some have peers, some have none


def test_a_pool_of_like_hosts_is_one_class(tmp_path):
    """Hosts with the very same neighbours are one class, interchangeable with each other
    through it: a fleet's thousands of hosts are not thousands of lists of each other."""
    lines = ["cis:", "  - {id: net-1, type: network, match: {zone: z1}}",
             "  - {id: net-2, type: network, match: {zone: z2}}"]
    lines += [f"  - {{id: h-{i}, type: host, match: {{node: h-{i}}}, depends_on: [net-1]}}" for i in range(50)]
    lines += ["  - {id: h-other, type: host, match: {node: h-other}, depends_on: [net-2]}"]
    (tmp_path / "cmdb.yaml").write_text("\n".join(lines) + "\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text("data_dir: data\ncmdb: [cmdb.yaml]\n")
    part = build_pipeline(load_config(str(cfg)), VirtualClock(0.0), Metrics(), None).parts["problems"]
    pool = part.key("h-0")
    assert all(part.key(f"h-{i}") == pool for i in range(50))
    assert part.peers(pool) == {pool}
    assert part.key("h-other") != pool and part.key("h-other") not in part.peers(pool)
    assert role_peers(part, "h-7") == {f"h-{i}" for i in range(50)} - {"h-7"}
    assert part.key("nowhere") is None
