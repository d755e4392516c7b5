"""Build (or reuse) a demo world: data, tokenizer, two base models and the over-confident teacher.

``build_world(root, seed)`` is the one entry point. A world is cached by seed and recipe: a folder
``<root>/world-seed{seed}`` whose ``manifest.json`` (written last) carries the config hash is reused
as is; anything else (no manifest, other hash) is rebuilt. The build writes into a hidden
``.world-seed{seed}.partial-<pid>-<token>`` folder and renames it at the very end, so an interrupted
build never looks complete. Deterministic given (config, seed) on the same machine and thread count.

Steps (FIRST paper setting, Shum et al. EMNLP 2024, sec. 3, in miniature):

1. facts -> questions with exact Bayes posteriors -> lm-eval tasks (JSONL + YAML) + Bayes numbers;
2. generic pretraining text -> byte-level BPE tokenizer;
3. teacher base (larger) pretrained on the whole generic text: it learns the world's facts and is roughly
   calibrated; student base (small) pretrained on a small share of it: the format and the answer words, few facts;
4. teacher = teacher base fine-tuned several epochs on the small in-domain train splits: it memorises
   sampled answers and becomes over-confident (tuning-induced mis-calibration).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from first_demo.config import WorldConfig
from first_demo.corpus import make_pretraining_lines
from first_demo.facts import sample_world_facts
from first_demo.questions import TASKS, Question, make_task_questions, prompt_text
from first_demo.scoring import bayes_choice_scores
from first_demo.task_files import write_task
from first_demo.world import MANIFEST_FORMAT, MANIFEST_NAME, DemoWorld, read_manifest

TORCH_THREADS = 2  # the build's default; OMP_NUM_THREADS, when set, wins (see build_threads)
_PARTIAL_MARK = ".partial-"


def world_folder_name(config: WorldConfig, seed: int) -> str:
    """``world-seed{seed}`` for the default recipe name, ``world-{name}-seed{seed}`` otherwise."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0; got {seed}")
    return f"world-seed{seed}" if config.name == "default" else f"world-{config.name}-seed{seed}"


def find_complete_world(root: Path, seed: int = 0, config: WorldConfig | None = None) -> DemoWorld | None:
    """The cached world for (config, seed) under ``root`` if complete and of the same recipe, else None."""
    config = config or WorldConfig()
    world_dir = Path(root).expanduser().resolve() / world_folder_name(config, seed)
    manifest = read_manifest(world_dir)
    if manifest is None or manifest.get("config_hash") != config.config_hash() or manifest.get("seed") != seed:
        return None
    from first_demo.task_files import relocate_task_yamls

    relocate_task_yamls(world_dir / manifest["paths"]["task_dir"])  # a moved or copied world keeps working
    return DemoWorld.load(world_dir)


def build_world(root: Path, seed: int = 0, progress: bool = True, config: WorldConfig | None = None) -> DemoWorld:
    """Build the demo world for ``seed`` under ``root`` (or return the cached one instantly).

    Args:
        root: parent folder; the world goes to ``root/world-seed{seed}`` (created if needed).
        seed: the world's seed (facts, questions, corpus, model initialisation and batch order).
        progress: show a progress bar on stderr.
        config: the recipe (default ``WorldConfig()``; tests use ``WorldConfig.mini()``).

    Returns:
        The ``DemoWorld`` handle of the complete folder.
    """
    config = config or WorldConfig()
    root = Path(root).expanduser().resolve()
    cached = find_complete_world(root, seed, config)
    if cached is not None:
        return cached
    root.mkdir(parents=True, exist_ok=True)
    final_dir = root / world_folder_name(config, seed)
    _remove_dead_partials(root, final_dir.name)
    build_dir = root / f".{final_dir.name}{_PARTIAL_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    build_dir.mkdir()
    try:
        with _torch_threads(build_threads()), _ProgressBar(config, enabled=progress) as bar:
            _build_into(build_dir, final_dir, config, seed, bar)
        _publish(build_dir, final_dir)
    finally:
        if build_dir.exists():
            shutil.rmtree(build_dir, ignore_errors=True)
    world = find_complete_world(root, seed, config)
    if world is None:
        raise RuntimeError(f"demo world build finished but {final_dir} is not a complete world of this recipe")
    return world


def _build_into(build_dir: Path, final_dir: Path, config: WorldConfig, seed: int, bar: "_ProgressBar") -> None:
    started = time.perf_counter()
    facts_rng, questions_rng, corpus_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, 1]).spawn(3))
    bar.phase("facts and tasks")
    facts = sample_world_facts(config, facts_rng)
    _write_json(build_dir / "facts.json", facts.to_dict())
    questions: dict[str, dict[str, list[Question]]] = {}
    split_files: dict[str, dict[str, str]] = {}
    for task in TASKS:
        questions[task.name] = make_task_questions(
            facts, task, config.split_sizes(task.family, task.domain), config.n_csqa_choices, questions_rng
        )
        final_files = write_task(task.name, questions[task.name], build_dir / "tasks", final_dir / "tasks")
        split_files[task.name] = {split: str(path.relative_to(final_dir)) for split, path in final_files.items()}
    bayes = {name: _bayes_numbers(by_split["test"]) for name, by_split in questions.items()}
    _write_json(build_dir / "bayes.json", bayes)

    bar.phase("tokenizer")
    from first_demo.tokenizer import load_world_tokenizer, train_world_tokenizer

    lines = make_pretraining_lines(facts, config.pretrain_lines, corpus_rng, config.pretrain_question_share)
    # The tokenizer learns the corpus and every question prompt, so task words are single tokens too.
    prompts = [f"{prompt_text(q.question)} {' '.join(q.choices)}" for by_split in questions.values() for qs in by_split.values() for q in qs]
    train_world_tokenizer(lines + prompts, config.vocab_size, build_dir / "tokenizer")
    tokenizer = load_world_tokenizer(build_dir / "tokenizer")

    from first_demo.models import TrainingRun, answer_examples, new_llama, pretraining_examples, train_causal_lm

    pretrain_ids, pretrain_labels = pretraining_examples(lines, tokenizer)
    losses: dict[str, float] = {}
    for name, size, steps, model_seed in (
        ("student-base", config.student_base, config.student_steps, 1),
        ("teacher-base", config.teacher_base, config.teacher_base_steps, 2),
    ):
        bar.phase(f"pretraining {name}")
        model = new_llama(size, tokenizer, seed=seed * 1000 + model_seed)
        run = TrainingRun(steps=steps, batch_size=config.pretrain_batch, lr=config.pretrain_lr, seed=seed * 1000 + model_seed)
        step_losses = train_causal_lm(model, pretrain_ids, pretrain_labels, run, tokenizer.pad_token_id, bar.step)
        losses[name] = float(np.mean(step_losses[-50:]))
        _save_model(model, tokenizer, build_dir / "models" / name)

    # `model` is now the teacher base; the teacher continues from it on the in-domain train splits.
    bar.phase("fine-tuning teacher")
    contexts, answers = [], []
    for task in TASKS:
        if task.domain == "in_domain":
            for q in questions[task.name]["train"]:
                contexts.append(prompt_text(q.question))
                answers.append(q.choices[q.label])
    finetune_ids, finetune_labels = answer_examples(contexts, answers, tokenizer)
    run = TrainingRun(
        steps=finetune_steps(config), batch_size=config.finetune_batch, lr=config.finetune_lr,
        seed=seed * 1000 + 3, warmup_fraction=0.0, final_lr_fraction=1.0,
    )
    step_losses = train_causal_lm(model, finetune_ids, finetune_labels, run, tokenizer.pad_token_id, bar.step)
    losses["teacher"] = float(np.mean(step_losses[-max(1, len(finetune_ids) // config.finetune_batch):]))
    _save_model(model, tokenizer, build_dir / "models" / "teacher")

    bar.phase("writing manifest")
    manifest = {
        "format": MANIFEST_FORMAT,
        "complete": True,
        "seed": seed,
        "config_hash": config.config_hash(),
        "config": config.to_dict(),
        "in_domain_tasks": [t.name for t in TASKS if t.domain == "in_domain"],
        "ood_tasks": [t.name for t in TASKS if t.domain == "ood"],
        "paths": {
            "task_dir": "tasks",
            "split_files": split_files,
            "tokenizer_dir": "tokenizer",
            "student_base_dir": "models/student-base",
            "teacher_base_dir": "models/teacher-base",
            "teacher_dir": "models/teacher",
        },
        "bayes": bayes,
        "final_train_losses": losses,
        "build_seconds": round(time.perf_counter() - started, 1),
        "versions": _library_versions(),
    }
    _write_json(build_dir / MANIFEST_NAME, manifest)


def finetune_steps(config: WorldConfig) -> int:
    """Optimiser steps of the teacher fine-tune: ``finetune_epochs`` passes over the in-domain train splits."""
    n_train = sum(config.split_sizes(t.family, t.domain).train for t in TASKS if t.domain == "in_domain")
    return config.finetune_epochs * -(-n_train // config.finetune_batch)


def _bayes_numbers(questions: list[Question]) -> dict[str, float]:
    """The exact posterior audited like a model (first_eval's metrics, 15 bins as every report), plus the
    accuracy it expects (mean of each question's largest posterior probability)."""
    from first_eval.metrics import ece

    scores = bayes_choice_scores(questions)
    probs = scores.probabilities()
    numbers = {"n_questions": int(probs.n_questions), "accuracy": float(probs.correct.mean()),
               "mean_confidence": float(probs.confidences.mean()),
               "ece": float(ece(probs.confidences, probs.correct, n_bins=15)),
               "nll": float(-scores.gold_log_probs().mean()),
               "expected_accuracy": float(np.mean([max(q.bayes_probs) for q in questions]))}
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in numbers.items()}


def _save_model(model, tokenizer, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n", encoding="utf-8")


def _library_versions() -> dict[str, str]:
    import tokenizers
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}


def _publish(build_dir: Path, final_dir: Path) -> None:
    """Move the finished build into place; a stale/incomplete folder there is replaced, a complete
    one written meanwhile by another process is kept (and ours dropped)."""
    if final_dir.exists():
        if read_manifest(final_dir) is not None and read_manifest(final_dir).get("config_hash") == read_manifest(build_dir).get("config_hash"):
            return  # another process won the race with the same recipe
        stale = final_dir.with_name(f".{final_dir.name}.stale-{os.getpid()}-{secrets.token_hex(4)}")
        final_dir.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        build_dir.rename(final_dir)
    except OSError:
        if read_manifest(final_dir) is None:  # not a concurrent complete build: a real error
            raise


def _remove_dead_partials(root: Path, final_name: str) -> None:
    """Delete ``.<final_name>.partial-<pid>-*`` folders whose building process is gone."""
    for candidate in root.glob(f".{final_name}{_PARTIAL_MARK}*"):
        pid_text = candidate.name[len(f".{final_name}{_PARTIAL_MARK}"):].split("-", 1)[0]
        if pid_text.isdigit() and not _process_alive(int(pid_text)):
            shutil.rmtree(candidate, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def build_threads() -> int:
    """Torch threads for the build: ``OMP_NUM_THREADS`` when set to a positive integer (a shared machine, a
    measurement run), else ``TORCH_THREADS``. A build is deterministic per thread count, not across them."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else TORCH_THREADS


@contextmanager
def _torch_threads(n_threads: int) -> Iterator[None]:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _ProgressBar:
    """The world's build on one bar (first_eval.progress) over all training steps; phases show as its description."""

    def __init__(self, config: WorldConfig, enabled: bool) -> None:
        self.total = config.student_steps + config.teacher_base_steps + finetune_steps(config)
        self.enabled = enabled
        self._bar = None
        self._handle = None

    def __enter__(self) -> "_ProgressBar":
        from first_eval.progress import progress_bar

        self._bar = progress_bar(self.total, "demo world: starting", unit="steps", enabled=self.enabled,
                                 transient=False)
        self._handle = self._bar.__enter__()
        return self

    def phase(self, description: str) -> None:
        self._handle.describe(f"demo world: {description}")

    def step(self, step: int, loss: float) -> None:
        self._handle.advance(1, note=f"loss {loss:.3f}")

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(*exc)
