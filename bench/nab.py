"""NAB evaluation of the detector: dev score, optimize mode, leave-one-category-out.

    python bench/nab.py [--nab ../shared/nab] [--config C.yaml] [--jobs 2]
                        [--loco-sensitivities 0.3,0.4,0.5,0.6,0.7]

Runs ``detect_csv`` on every file of NAB's data folder (in parallel), scores
the ``is_anomaly`` decisions and NAB's optimize mode with the shared
``score.py``, then estimates what holds on unseen series: for each of the
seven categories, the sensitivity that scores best (standard profile) on the
other six is chosen among a few candidates and the held-out category is
scored with it; the held-out raw scores are summed and normalised.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detectors.nabcsv import detect_csv, load_spec  # noqa: E402
from detectors.spec import DetectorSpec  # noqa: E402

PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def _load_scorer(nab: Path):
    spec = importlib.util.spec_from_file_location("nab_score", nab / "score.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["nab_score"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _run_one(args: tuple[DetectorSpec, str, str]) -> str:
    spec, src, dst = args
    detect_csv(spec, src, dst)
    return src


def run_corpus(spec: DetectorSpec, nab: Path, out: Path, jobs: int) -> float:
    files = sorted((nab / "data").glob("*/*.csv"))
    tasks = [(spec, str(f), str(out / f.relative_to(nab / "data"))) for f in files]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(_run_one, tasks))
    return time.perf_counter() - t0


def score(scorer, nab: Path, results: Path, mode: str, names: set[str] | None = None) -> dict:
    labels = scorer.load_labels(str(nab / "labels.json"))
    if names is not None:
        labels = {k: v for k, v in labels.items() if k in names}
    corpus = scorer.load_corpus(str(nab / "data"), labels)
    scores, decisions = {}, {}
    for series in corpus:
        path = scorer.find_results_file(str(results), series.name, None)
        s, d = scorer.load_results(path, series, mode)
        if s is not None:
            scores[series.name] = s
        if d is not None:
            decisions[series.name] = d
    return scorer.evaluate(corpus, scorer.PROFILES, mode, scores=scores, decisions=decisions,
                           threshold=None)


def _row(label: str, summary: dict) -> str:
    cells = [f"{summary['profiles'][p]['score']:8.1f}" for p in PROFILES]
    std = summary["profiles"]["standard"]
    return (f"{label:<34}" + "".join(cells)
            + f"   {std['detected_windows']}/{std['windows']} windows, {std['fp_rows']} FP rows")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nab", type=Path, default=ROOT.parent / "shared" / "nab")
    ap.add_argument("--config", default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "nab")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--loco-sensitivities", default="0.3,0.4,0.5,0.6,0.7",
                    help="candidate sensitivities for leave-one-category-out ('' to skip)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if not (args.nab / "score.py").exists():
        print(f"no NAB folder at {args.nab}", file=sys.stderr)
        return 1
    scorer = _load_scorer(args.nab)
    base = load_spec(args.config)
    n_rows = sum(sum(1 for _ in open(f)) - 1 for f in (args.nab / "data").glob("*/*.csv"))

    results = args.out / "dev"
    elapsed = run_corpus(base, args.nab, results, args.jobs)
    dev = score(scorer, args.nab, results, "decisions")
    opt = score(scorer, args.nab, results, "optimize")
    print(f"config: model={base.model} sensitivity={base.sensitivity} warmup={base.warmup} "
          f"window={base.window} refit_every={base.refit_every}")
    print(f"detect: {n_rows} rows in {elapsed:.1f} s with {args.jobs} processes")
    print(f"{'':<34}{'standard':>8}{'low_FP':>8}{'low_FN':>8}")
    print(_row("dev, decisions", dev))
    print(_row("dev, optimize (threshold tuned)", opt))
    if args.verbose:
        for name, f in dev["profiles"]["standard"]["per_file"].items():
            print(f"  {name:<58} raw {f['raw']:7.3f} hit {f['detected_windows']}/{f['windows']}"
                  f" FP {f['fp_rows']}")

    cands = [float(s) for s in args.loco_sensitivities.split(",") if s.strip()]
    if not cands:
        return 0
    per_cand: dict[float, Path] = {}
    for s in cands:
        path = args.out / f"sens_{s:g}"
        if s == base.sensitivity:
            path = results
        else:
            run_corpus(dataclasses.replace(base, sensitivity=s), args.nab, path, args.jobs)
        per_cand[s] = path
    labels = json.loads((args.nab / "labels.json").read_text())
    cats = sorted({name.split("/")[0] for name in labels})
    for s, path in per_cand.items():
        print(_row(f"dev, decisions, sensitivity {s:g}", score(scorer, args.nab, path, "decisions")))
    totals = {p: {"raw": 0.0, "null": 0.0, "perfect": 0.0} for p in PROFILES}
    print("leave-one-category-out (choose sensitivity on 6 categories by standard, score the 7th):")
    for cat in cats:
        held = {n for n in labels if n.startswith(cat + "/")}
        rest = set(labels) - held
        best = max(cands, key=lambda s: score(scorer, args.nab, per_cand[s], "decisions", rest)
                   ["profiles"]["standard"]["score"])
        summary = score(scorer, args.nab, per_cand[best], "decisions", held)
        for p in PROFILES:
            for k in totals[p]:
                totals[p][k] += summary["profiles"][p][k]
        print(f"  {cat:<24} chosen sensitivity {best:g}: held-out raw standard "
              f"{summary['profiles']['standard']['raw']:7.3f}")
    loco = {p: 100 * (t["raw"] - t["null"]) / (t["perfect"] - t["null"]) for p, t in totals.items()}
    print(f"{'leave-one-category-out':<34}" + "".join(f"{loco[p]:8.1f}" for p in PROFILES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
