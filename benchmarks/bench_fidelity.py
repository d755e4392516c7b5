"""Does the demo world show the FIRST paper's claim, and how reliably? The full demo over several seeds.

For each seed: ``first demo`` from a clean cache (a new world: facts, questions, tokenizer, base models and
teacher all drawn from the seed; then the teacher's temperature, the top-5 store and every student), timed,
with the machine's load average before and after (the wall time is only comparable under the same load).
Then the per-seed table, per variant and task the mean ± sd over seeds of accuracy and ECE, the teacher
knowledge each seed stored (temperature, top-5 mass), and the claims checked per (seed, task):

    the paper's:    ECE(first) < ECE(ce),   ECE(first) < ECE(topk-notemp),   accuracy(first) >= accuracy(ce)
    the setting's:  accuracy(teacher) > accuracy(student-base)   (the teacher is the stronger model)
                    accuracy(student) > accuracy(student-base), per trained student (it learnt from training)

The anchor of each comparison is the CE student (and the untempered top-k student), trained in the same run
from the same initial student, data order and schedule. Nothing here is asserted: the figures are printed
(and written as JSON with --json) as they come out. Set OMP_NUM_THREADS to cap the world build's threads.

Run: python benchmarks/bench_fidelity.py [--seeds 0,1,2] [--root DIR] [--bootstrap 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

TEACHER, STUDENT_BASE = "teacher", "student-base"
REFERENCE_ROWS = ("teacher", "teacher+ts", "student-base", "teacher-base", "bayes-optimal")  # not trained students


def run_seed(root: Path, seed: int, bootstrap: int) -> tuple[dict, float]:
    from first_demo.pipeline import DemoRunConfig, run_demo

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


def trained_students(document: dict) -> list[str]:
    return [m for m in document["models"] if m not in REFERENCE_ROWS]


def summarize(documents: dict[int, dict]) -> dict:
    first_document = next(iter(documents.values()))
    models, tasks = list(first_document["models"]), first_document["task_order"]
    table = {m: {t: {k: [d["models"][m]["tasks"][t][k] for d in documents.values() if t in d["models"][m]["tasks"]]
                     for k in ("accuracy", "ece")} for t in tasks} for m in models}
    claims = {"ece_first_below_ce": [], "ece_first_below_topk_notemp": [], "acc_first_at_least_ce": [],
              "acc_teacher_above_student_base": []}
    above_base = {m: [] for m in trained_students(first_document)}
    for seed, document in documents.items():
        for task in tasks:
            get = lambda m, k: document["models"][m]["tasks"][task][k]  # noqa: E731
            claims["ece_first_below_ce"].append((seed, task, get("first", "ece") < get("ce", "ece")))
            claims["ece_first_below_topk_notemp"].append((seed, task, get("first", "ece") < get("topk-notemp", "ece")))
            claims["acc_first_at_least_ce"].append((seed, task, get("first", "accuracy") >= get("ce", "accuracy")))
            claims["acc_teacher_above_student_base"].append(
                (seed, task, get(TEACHER, "accuracy") > get(STUDENT_BASE, "accuracy")))
            for model in above_base:
                above_base[model].append((seed, task, get(model, "accuracy") > get(STUDENT_BASE, "accuracy")))
    stores = {seed: {kind: {key: store.get(key) for key in ("temperature", "topk_mass_mean", "topk_mass_p10")}
                     for kind, store in d.get("distill", {}).get("stores", {}).items() if store.get("selection") == "topk"}
              for seed, d in documents.items()}
    return {"table": table, "claims": claims, "above_student_base": above_base, "stores": stores,
            "tasks": tasks, "models": models}


def print_table(rows: dict[str, list[str]], tasks: list[str], cell_width: int) -> None:
    print(f"{'model':16s} " + "  ".join(f"{t:>{cell_width}s}" for t in tasks))
    for model, cells in rows.items():
        print(f"{model:16s} " + "  ".join(f"{c:>{cell_width}s}" for c in cells))


def print_claims(outcomes_by_name: dict[str, list], width: int = 32) -> None:
    for name, outcomes in outcomes_by_name.items():
        held = sum(ok for _, _, ok in outcomes)
        failed = ", ".join(f"seed {s} {t}" for s, t, ok in outcomes if not ok)
        print(f"  {name:{width}s} {held}/{len(outcomes)}" + (f"   (not: {failed})" if failed else ""))


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
    documents, seconds, loads = {}, {}, {}
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}, {os.cpu_count()} CPUs", flush=True)
    for seed in seeds:
        load_before = os.getloadavg()[0]
        documents[seed], seconds[seed] = run_seed(root, seed, args.bootstrap)
        loads[seed] = (load_before, os.getloadavg()[0])
        print(f"seed {seed}: full demo from a clean cache {seconds[seed]:.1f} s "
              f"(1-min load average {loads[seed][0]:.2f} before, {loads[seed][1]:.2f} after)", flush=True)
    summary = summarize(documents)
    tasks, width = summary["tasks"], max(len(t) for t in summary["tasks"])
    for seed, document in documents.items():
        print(f"\nseed {seed}  (accuracy / ECE)")
        print_table({m: [f"{document['models'][m]['tasks'][t]['accuracy']:.3f} / {document['models'][m]['tasks'][t]['ece']:.3f}"
                         if t in document["models"][m]["tasks"] else "—" for t in tasks] for m in summary["models"]},
                    tasks, max(width, 13))
    print(f"\nmean ± sd over seeds {seeds}  (accuracy | ECE)")
    print_table({m: [f"{mean_sd(summary['table'][m][t]['accuracy'])} | {mean_sd(summary['table'][m][t]['ece'])}"
                     for t in tasks] for m in summary["models"]}, tasks, width + 26)
    print("\nteacher knowledge stored (top-k selection; mass = teacher probability the k stored tokens hold):")
    for seed, stores in summary["stores"].items():
        print(f"  seed {seed}: " + "; ".join(
            f"{kind} T = {s['temperature']:.2f}, top-k mass mean {s['topk_mass_mean']:.3f} (p10 {s['topk_mass_p10']:.3f})"
            for kind, s in stores.items()))
    print("\nclaim held in (seed, task) pairs:")
    print_claims(summary["claims"])
    print("accuracy above student-base in (seed, task) pairs:")
    print_claims(summary["above_student_base"])
    print(f"\nfull demo wall time from a clean cache: {mean_sd(list(seconds.values()))} s (goal <= 300 s)")
    if args.json:
        args.json.write_text(json.dumps({"seeds": seeds, "seconds": seconds, "load_average": loads, **summary},
                                        indent=1, default=str))
    if scratch:
        scratch.cleanup()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
