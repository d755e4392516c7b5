"""`first demo`: the whole FIRST story on the demo world, end to end, in one report.

1. build (or reuse) the demo world: tasks with a known Bayes posterior, a base student, an over-confident
   fine-tuned teacher (``build.py``);
2. run ``first distill`` on it (first_distill.pipeline): the teacher's temperature fitted on the in-domain
   validation splits, its top-5 knowledge stored, one student per variant trained from the base student on
   the in-domain train splits, every model audited with lm-eval in- and out-of-domain;
3. write one comparison: the teacher raw and tempered, the base models, the Bayes-optimal predictor (the
   best calibration any model can reach here) and each student, with deltas against the CE student.

Outputs in ``output``: ``report.html`` + ``metrics.json`` (schema first.distill/1), the cached world
``world-seed{seed}/`` and the distill run ``run-seed{seed}-<recipe hash>/`` (stores, students, one ``first report`` folder
per model under ``audits/``). A rerun reuses the world and whatever of the run is complete.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from first_eval.lm_eval_bridge import TaskSamples

BAYES = "bayes-optimal"
DEMO_VARIANTS = ("first", "ce", "label-smoothing", "topk-notemp", "topk-tail", "rs-kd", "full-kd")


def demo_training_settings():
    """The students' schedule: the one that made the teacher over-confident (16 epochs, lr 2e-3, constant)."""
    from first_distill.trainer import TrainerSettings

    return TrainerSettings(epochs=16, batch_size=32, learning_rate=2e-3, lr_scheduler="constant", warmup_ratio=0.0,
                           save_steps=100, progress=False)


@dataclass(frozen=True)
class DemoRunConfig:
    output: Path
    seed: int = 0
    n_bootstrap: int = 1000
    batch_size: int = 32
    progress: bool = True
    world_config: Any = None  # a demo WorldConfig; None: the default world (WorldConfig.mini() in tests)
    variants: tuple[str, ...] = DEMO_VARIANTS
    settings: Any = field(default_factory=demo_training_settings)


def bayes_task_samples(world, task: str) -> TaskSamples:
    """The world's exact Bayes posterior on ``task``'s test split, audited as if a model had scored it."""
    questions = world.questions(task, "test")
    probs = [np.clip(np.asarray(q.bayes_probs, dtype=float), 1e-12, 1.0) for q in questions]
    counts = np.array([len(p) for p in probs])
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return TaskSamples(
        task=task, source=f"{world.split_files[task]['test']} (Bayes posterior)", loglik_sums=np.log(np.concatenate(probs)),
        char_lengths=None, offsets=offsets, gold=np.array([q.label for q in questions], dtype=np.int64),
        doc_ids=np.arange(len(questions)), recorded={},
    )


def run_demo(config: DemoRunConfig) -> Path:
    """Build/reuse the world, run first distill on it, write the comparison; returns the report path."""
    import dataclasses

    import torch

    from first_demo.build import build_world
    from first_demo.config import WorldConfig
    from first_distill.distill_config import RESUME_FREE_FIELDS, DistillConfig
    from first_distill.pipeline import run_distill
    from first_distill.run_layout import CONFIG_FILE
    from first_distill.run_folder import check_run_folder
    from first_eval.errors import InputError

    output = Path(config.output)
    world = build_world(output, seed=config.seed, progress=config.progress, config=config.world_config)
    recipe = (config.world_config or WorldConfig()).config_hash()[:8]
    run_dir = output / f"run-seed{config.seed}-{recipe}"
    for stale in output.glob(f"run-seed{config.seed}-*"):
        if stale != run_dir and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)  # a run on an older world recipe of this seed
    distill = DistillConfig(
        teacher=Path(world.teacher_dir), student=Path(world.student_base_dir), output=run_dir,
        eval_tasks=tuple(world.in_domain_tasks) + tuple(world.ood_tasks), train_tasks=tuple(world.in_domain_tasks),
        include_path=Path(world.task_dir), variants=tuple(config.variants), top_k=5,
        settings=dataclasses.replace(config.settings, seed=config.seed, progress=config.progress),
        eval_batch_size=config.batch_size, device="cpu", n_bootstrap=config.n_bootstrap, progress=config.progress,
        report_dir=output)
    try:  # a finished or killed run of this very recipe is resumed; any other is started over
        resume = check_run_folder(run_dir, CONFIG_FILE, distill.to_dict(), True, RESUME_FREE_FIELDS, "distill run")
    except InputError:
        shutil.rmtree(run_dir)
        resume = False
    distill = dataclasses.replace(distill, resume=resume)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the demo models are tiny: one thread beats two by a wide margin
    try:
        result = run_distill(
            distill,
            reference_models={"student-base": Path(world.student_base_dir), "teacher-base": Path(world.teacher_base_dir)},
            reference_samples={BAYES: [bayes_task_samples(world, task) for task in distill.eval_tasks]},
            notes=story(world), title="first demo: tuning-induced over-confidence, and students that fix it",
            extra={"demo": {"world": str(world.root), "seed": world.seed, "bayes_reference": world.bayes}})
    finally:
        torch.set_num_threads(threads)
    return result.report


def story(world) -> list[str]:
    """The paragraphs at the top of the demo report: what the world is and how to read the rows."""
    return [
        "A seeded toy world: made-up entities, each with a known probability distribution over attribute values. "
        "Every question's gold answer is drawn from that distribution, so the Bayes posterior of each question is known "
        f"exactly; the {BAYES} rows are that posterior audited like a model, the best calibration any model can reach here.",
        "student-base and teacher-base are small Llama models pretrained on the world's text: teacher-base (larger) on all of "
        "it, so it knows the world's facts; student-base (smaller) on a small share, so it knows the question format and "
        "the answer words but few facts, and must learn the task from training (as in the paper, the teacher is the "
        "stronger model). The teacher is teacher-base "
        "fine-tuned for many epochs on the in-domain train splits until it memorises sampled labels: tuning-induced "
        f"over-confidence. In-domain tasks: {', '.join(world.in_domain_tasks)}; out-of-domain: {', '.join(world.ood_tasks)}.",
        "teacher+ts divides the teacher's scores by one temperature fitted on the in-domain validation splits. Every "
        "student starts from student-base and trains on the same in-domain train questions with the teacher's schedule: "
        "first learns the tempered teacher's top-5 tokens (FIRST), topk-notemp the untempered ones, ce and "
        "label-smoothing the gold answers. Deltas are against the ce student; 'fitted T' and 'ECE after T' are a "
        "separate, cross-fitted temperature on each test split itself.",
    ]
