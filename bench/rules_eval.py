"""Rule evaluation cost per alert with 1,000 rules, most of them regex matchers.

    python bench/rules_eval.py [--rules 1000] [--alerts 20000]

The rule mix is what large rule files look like: regexes on service names
(alternations), on instances and namespaces (prefixes), some free-form
regexes (`.*timeout.*`), equality matchers, and a few rules with only
negative or CMDB matchers that every alert must be tested against. Every
alert is a distinct label set, so nothing is served from a cache. The same
alerts are also run through a naive loop over all rules, for comparison.
"""

from __future__ import annotations

import argparse
import random
import time

from rules.matchers import parse_matchers
from rules.rule import Rule
from rules.ruleset import RuleSet
from rules.templates import Template


def make_rules(n: int, rng: random.Random) -> list[Rule]:
    rules = []
    for i in range(n):
        kind = rng.random()
        if kind < 0.30:  # alternation of service names
            a, b, c = (rng.randrange(400) for _ in range(3))
            spec = [f'service=~"svc-{a}|svc-{b}|svc-{c}"', 'severity=~"critical|warning"']
        elif kind < 0.55:  # prefixes on instances / namespaces
            spec = (
                [f'instance=~"host-{rng.randrange(300)}-.*"']
                if rng.random() < 0.5
                else [f'namespace=~"team-{rng.randrange(200)}-.*|shared-{rng.randrange(200)}-.*"']
            )
        elif kind < 0.70:  # alertname families
            spec = [f'alertname=~"(?:Kube|Node){rng.randrange(150)}(Down|Slow)"']
        elif kind < 0.80:  # free-form regexes that cannot be indexed
            word = rng.choice(
                ["timeout", "refused", "oom", "disk", "latency", "tls", "dns", "quota"]
            )
            spec = [f'summary=~".*{word}-{rng.randrange(50)}.*"']
        elif kind < 0.95:  # equality
            spec = [
                f'alertname="Alert{rng.randrange(500)}"',
                f'env="{rng.choice(["prod", "staging"])}"',
            ]
        else:  # only negative or CMDB matchers: tested on every alert
            spec = [f'env!="dev{i}"', f'ci.criticality=~"{rng.choice(["high", "critical"])}"']
        rules.append(
            Rule(
                name=f"rule-{i}",
                matchers=tuple(parse_matchers(spec)),
                set_labels={"team": Template(f"team-{i % 37}")},
                continue_=rng.random() < 0.3,
            )
        )
    return rules


def make_alerts(n: int, rng: random.Random) -> list[dict[str, str]]:
    out = []
    for i in range(n):
        out.append(
            {
                "alertname": rng.choice(
                    [
                        f"Alert{rng.randrange(600)}",
                        f"Kube{rng.randrange(200)}Down",
                        f"Node{rng.randrange(200)}Slow",
                    ]
                ),
                "service": f"svc-{rng.randrange(500)}",
                "instance": f"host-{rng.randrange(400)}-{i}:9100",
                "namespace": rng.choice(["team", "shared", "kube"])
                + f"-{rng.randrange(250)}-{i % 7}",
                "severity": rng.choice(["critical", "warning", "info"]),
                "env": rng.choice(["prod", "staging", "dev"]),
                "summary": f"{rng.choice(['timeout', 'ok', 'oom', 'dns'])}-{rng.randrange(80)} on node {i}",
                "uid": str(i),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--alerts", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rules = make_rules(args.rules, rng)
    regex_rules = sum(any(m.op in ("=~", "!~") for m in r.matchers) for r in rules)
    alerts = make_alerts(args.alerts, rng)
    cis = {"criticality": "medium"}

    def ci_attrs(_ci: str) -> dict[str, str]:
        return cis

    t = time.perf_counter()
    rs = RuleSet(rules)
    build = time.perf_counter() - t

    matched = 0
    t = time.perf_counter()
    for labels in alerts:
        matched += len(rs.evaluate(labels, {}, "ci-1", ci_attrs).matched)
    indexed = (time.perf_counter() - t) / len(alerts) * 1e6

    sample = alerts[: max(1, len(alerts) // 10)]
    t = time.perf_counter()
    naive_matches = [rs.evaluate_naive(labels, "ci-1", ci_attrs) for labels in sample]
    naive = (time.perf_counter() - t) / len(sample) * 1e6
    indexed_matches = [rs.evaluate(labels, {}, "ci-1", ci_attrs).matched for labels in sample]
    if indexed_matches != naive_matches:
        raise SystemExit("indexed and naive evaluation disagree")

    print(
        f"rules: {len(rules)} ({regex_rules} with regex matchers), index built in {build * 1000:.1f} ms"
    )
    print(
        f"alerts: {len(alerts)} distinct label sets, {matched / len(alerts):.2f} rules matched per alert"
    )
    print(f"indexed evaluation: {indexed:.1f} us per alert")
    print(
        f"naive evaluation (every rule in turn): {naive:.1f} us per alert (same matches on {len(sample)} alerts)"
    )


if __name__ == "__main__":
    main()
