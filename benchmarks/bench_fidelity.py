"""Does the demo world show the FIRST paper's claim, and how reliably? The full demo over several seeds.

For each seed: ``first demo`` from a clean cache (a new world: facts, questions, tokenizer, base models and
teacher all drawn from the seed; then the teacher's temperature, the top-5 store and every student), timed.
Then, per variant and task, mean ± sd over seeds of accuracy and ECE, and the paper's claim checked per
(seed, task):

    ECE(first) < ECE(ce),   ECE(first) < ECE(topk-notemp),   accuracy(first) >= accuracy(ce)

The anchor of each comparison is the CE student (and the untempered top-k student), trained in the same run
from the same initial student, data order and schedule. Nothing here is asserted: the figures are printed
(and written as JSON with --json) as they come out.

Run: python benchmarks/bench_fidelity.py [--seeds 0,1,2] [--root DIR] [--bootstrap 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

CLAIM_VARIANTS = ("first", "ce", "topk-notemp")


def run_seed(root: Path, seed: int, bootstrap: int) -> tuple[dict, float]:
    from first_distill.demo.pipeline import DemoRunConfig, run_demo

    output = root / f"seed{seed}"
    started = time.perf_counter()
    run_demo(DemoRunConfig(output=output, seed=seed, n_bootstrap=bootstrap, progress=False))
    seconds = time.perf_counter() - started
    return json.loads((output / "metrics.json").read_text()), seconds


def mean_sd(values: list[float]) -> str:
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def summarize(documents: dict[int, dict]) -> dict:
    models = list(next(iter(documents.values()))["models"])
    tasks = next(iter(documents.values()))["task_order"]
    table = {m: {t: {k: [d["models"][m]["tasks"][t][k] for d in documents.values() if t in d["models"][m]["tasks"]]
                     for k in ("accuracy", "ece")} for t in tasks} for m in models}
    claims = {"ece_first_below_ce": [], "ece_first_below_topk_notemp": [], "acc_first_at_least_ce": []}
    for seed, document in documents.items():
        for task in tasks:
            get = lambda m, k: document["models"][m]["tasks"][task][k]  # noqa: E731
            claims["ece_first_below_ce"].append((seed, task, get("first", "ece") < get("ce", "ece")))
            claims["ece_first_below_topk_notemp"].append((seed, task, get("first", "ece") < get("topk-notemp", "ece")))
            claims["acc_first_at_least_ce"].append((seed, task, get("first", "accuracy") >= get("ce", "accuracy")))
    return {"table": table, "claims": claims, "tasks": tasks, "models": models}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--root", type=Path, default=None, help="Folder for the worlds and runs (default: a temp dir).")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    scratch = tempfile.TemporaryDirectory(prefix="bench-fidelity-") if args.root is None else None
    root = Path(scratch.name) if scratch else args.root
    documents, seconds = {}, {}
    for seed in seeds:
        documents[seed], seconds[seed] = run_seed(root, seed, args.bootstrap)
        print(f"seed {seed}: full demo from a clean cache {seconds[seed]:.1f} s", flush=True)
    summary = summarize(documents)
    print(f"\nmean ± sd over seeds {seeds}  (accuracy | ECE)")
    width = max(len(t) for t in summary["tasks"])
    print(f"{'model':16s} " + "  ".join(f"{t:>{width + 26}s}" for t in summary["tasks"]))
    for model in summary["models"]:
        cells = [f"{mean_sd(summary['table'][model][t]['accuracy'])} | {mean_sd(summary['table'][model][t]['ece'])}"
                 for t in summary["tasks"]]
        print(f"{model:16s} " + "  ".join(f"{c:>{width + 26}s}" for c in cells))
    print("\nclaim held in (seed, task) pairs:")
    for claim, outcomes in summary["claims"].items():
        held = sum(ok for _, _, ok in outcomes)
        failed = ", ".join(f"seed {s} {t}" for s, t, ok in outcomes if not ok)
        print(f"  {claim:30s} {held}/{len(outcomes)}" + (f"   (not: {failed})" if failed else ""))
    print(f"\nfull demo wall time from a clean cache: {mean_sd(list(seconds.values()))} s (goal <= 300 s)")
    if args.json:
        args.json.write_text(json.dumps({"seeds": seeds, "seconds": seconds, **summary}, indent=1, default=str))
    if scratch:
        scratch.cleanup()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
