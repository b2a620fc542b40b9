"""Where the time of `incidentd replay` goes: one replay's event loop, in this process,
split by component.

    python bench/replay_split.py [--config FILE --input EVENTS.jsonl] [--events 50000]

Without `--input`, the 50,000-event scenario-shaped file of `bench/corr_scale.py` (the
development week repeated; needs ../shared). Each component's public methods are
timed, and each moment is charged to the innermost one running, so the shares add up
to the whole loop: the correlator's time is not also counted as the incident
manager's. What timing a call costs is measured first and taken off each
component's time for its calls (and off the loop's).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# component -> (module, class or None for module functions, names)
COMPONENTS: dict[str, list[tuple[str, str | None, tuple[str, ...]]]] = {
    "reading events": [("daemon.replay", None, ("_loads", "parse_time", "read_alert"))],
    "CMDB mapping": [("cmdb.stage", "CmdbStage", ("process",))],
    "rules, silences, inhibition": [
        ("rules.stages", "RulesStage", ("process",)),
        ("rules.daemon", "_Counted", ("process",)),
        ("rules.daemon", "SuspectedChangeListener", ("on_changes",)),
        ("rules.daemon", "RulesPart", ("add_change",)),
    ],
    "incidents": [("daemon.incidents", "IncidentManager", ("absorb_repost", "apply", "tick"))],
    "correlation": [("correlation.engine", "TopologyCorrelator", ("place", "analyze", "outlasting", "over"))],
    "problems": [("daemon.problems.service", "ProblemsPart", ("on_changes",))],
    "notifications": [("daemon.notify.policy", "NotifyPolicy", ("on_changes", "tick"))],
    "SLA timers": [("daemon.sla", "SlaTracker", ("on_changes", "tick"))],
    "anomaly detectors": [("detectors.stage", "DetectorPart", ("observe", "tick"))],
    "writes to the store": [
        ("daemon.incidents", "IncidentManager", ("drain_writes",)),
        ("daemon.problems.service", "ProblemsPart", ("drain_writes",)),
        ("daemon.notify.policy", "NotifyPolicy", ("drain_writes",)),
        ("daemon.sla", "SlaTracker", ("drain_writes",)),
        ("daemon.store", "Store", ("apply_sync",)),
    ],
}
REST = "the loop itself (timers, dispatch)"


class Split:
    """Exclusive time per label: each moment goes to the innermost timed call."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self._stack = [REST]
        self._mark = time.perf_counter()

    def start(self) -> None:
        """Count from now: what came before is nobody's."""
        self._mark = time.perf_counter()

    def timed(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock, seconds, calls, stack = time.perf_counter, self.seconds, self.calls, self._stack

        def call(*args: Any, **kwargs: Any) -> Any:
            now = clock()
            seconds[stack[-1]] += now - self._mark
            self._mark = now
            stack.append(label)
            calls[label] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                now = clock()
                seconds[stack.pop()] += now - self._mark
                self._mark = now

        return call

    def stop(self) -> None:
        """Charge the time since the last call to what is running (the loop)."""
        self.seconds[self._stack[-1]] += time.perf_counter() - self._mark


def call_cost(n: int = 200_000) -> float:
    """Seconds a timed call adds to a call, by timing `n` calls of a function that does
    nothing, with and without."""
    def nothing() -> None:
        return None

    timed = Split().timed("x", nothing)
    took = []
    for fn in (nothing, timed):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        took.append(time.perf_counter() - t0)
    return max(0.0, (took[1] - took[0]) / n)


@contextmanager
def instrumented(split: Split) -> Iterator[None]:
    """Every method of `COMPONENTS` timed into `split`, put back as it was on the way out."""
    import importlib

    saved: list[tuple[Any, str, Any]] = []
    try:
        for label, places in COMPONENTS.items():
            for module, cls, names in places:
                owner = importlib.import_module(module)
                if cls is not None:
                    owner = getattr(owner, cls)
                for name in names:
                    fn = owner.__dict__[name] if cls is not None else getattr(owner, name)
                    saved.append((owner, name, fn))
                    setattr(owner, name, split.timed(label, fn))
        yield
    finally:
        for owner, name, fn in reversed(saved):
            setattr(owner, name, fn)


def run(config_path: str, events: str, shown: str | None = None) -> None:
    from daemon import checks
    from daemon.config import load_config
    from daemon.logs import quiet_logging
    from daemon.replay import build_result, replay_events

    quiet_logging()
    config = load_config(config_path)
    errors = checks.check_all(config)
    if errors:
        sys.exit("\n".join(errors))
    with open(events, "rb") as fh:
        n = sum(1 for line in fh if line.strip())
    cost = call_cost()
    split = Split()
    with tempfile.TemporaryDirectory() as work, instrumented(split):
        split.start()
        t0 = time.perf_counter()
        components, store = replay_events(config, events, work)
        split.stop()
        t1 = time.perf_counter()
        result = build_result(components, store)
        t2 = time.perf_counter()
        store.close()
    own = {label: max(0.0, secs - split.calls[label] * cost) for label, secs in split.seconds.items()}
    loop = sum(own.values())
    print(f"{shown or events}: {n:,} events, {len(result['incidents']):,} incidents, {len(result['problems']):,} problems")
    print(f"event loop {loop:.2f}s = {n / loop:,.0f} events/s, less {t1 - t0 - loop:.2f}s of timing "
          f"({cost * 1e6:.2f} µs a call); the result built from the store {t2 - t1:.2f}s\n")
    print(f"{'component':<36} {'seconds':>8} {'share':>7} {'calls':>9}")
    for label, secs in sorted(own.items(), key=lambda kv: -kv[1]):
        print(f"{label:<36} {secs:8.3f} {secs / loop:7.1%} {split.calls[label]:9,}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", help="the replay's config (with --input)")
    p.add_argument("--input", help="an events file; default: the scenario-shaped file made here")
    p.add_argument("--events", type=int, default=50_000, help="the made file's length")
    args = p.parse_args()
    if args.input:
        if not args.config:
            p.error("--input needs --config")
        run(args.config, args.input)
        return
    import corr_scale

    if not os.path.isdir(corr_scale.SCENARIO):
        sys.exit(f"{corr_scale.SCENARIO} not found: give --config and --input")
    with tempfile.TemporaryDirectory() as tmp:
        ev, cm, cfg = (os.path.join(tmp, n) for n in ("events.jsonl", "cmdb.yaml", "config.yaml"))
        corr_scale.scenario_events_file(ev, args.events, cm)
        with open(cfg, "w") as fh:
            fh.write(f"cmdb: [{cm}]\n")
        run(cfg, ev, "the scenario-shaped file (bench/corr_scale.py)")


if __name__ == "__main__":
    main()
