"""``DemoWorld``: the handle on one built world folder, read back from its manifest.

Layout of ``<root>/world-seed{seed}/`` (every path below is relative to it)::

    manifest.json            written last: config, config hash, seed, tasks, paths, Bayes numbers
    facts.json               the ground truth (entities, value and trait probabilities)
    bayes.json               Bayes-predictor accuracy / confidence / ECE / NLL per task (test split)
    tasks/<task>.yaml        lm-eval task configs (the include path)
    tasks/data/<task>/{train,validation,test}.jsonl
    tokenizer/               byte-level BPE, AutoTokenizer-loadable
    models/student-base/     small base LlamaForCausalLM (+ tokenizer files)
    models/teacher-base/     larger base LlamaForCausalLM (+ tokenizer files)
    models/teacher/          teacher-base fine-tuned on the in-domain train splits (+ tokenizer files)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from first_demo.questions import SPLITS, Question

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "first-demo-world/1"


@dataclass(frozen=True)
class DemoWorld:
    """A complete demo world on disk.

    Attributes:
        root: the world folder (``<root>/world-seed{seed}``).
        seed: the seed it was built from; config_hash: ``WorldConfig.config_hash()`` of its recipe.
        task_dir: lm-eval include path (``TaskManager(include_path=task_dir)``).
        in_domain_tasks: task names the teacher was fine-tuned on (their train splits).
        ood_tasks: out-of-domain task names (other attributes/traits and templates).
        split_files: ``{task: {split: jsonl path}}`` for every task and split.
        train_split_files: ``{task: train jsonl}`` for the in-domain tasks (the teacher's fine-tune data).
        tokenizer_dir, student_base_dir, teacher_base_dir, teacher_dir: ``from_pretrained`` folders.
        bayes: ``{task: {"accuracy", "mean_confidence", "ece", "nll", "expected_accuracy", "n_questions"}}``
            of the exact Bayes posterior on each test split (the best any predictor can do; its ECE
            is the finite-sample noise floor).
    """

    root: Path
    seed: int
    config_hash: str
    task_dir: Path
    in_domain_tasks: tuple[str, ...]
    ood_tasks: tuple[str, ...]
    split_files: dict[str, dict[str, Path]]
    train_split_files: dict[str, Path]
    tokenizer_dir: Path
    student_base_dir: Path
    teacher_base_dir: Path
    teacher_dir: Path
    bayes: dict[str, dict[str, float]]

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.in_domain_tasks + self.ood_tasks

    def questions(self, task: str, split: str) -> list[Question]:
        """The questions of ``task``'s ``split`` read from its JSONL."""
        from first_demo.task_files import read_questions

        if task not in self.split_files:
            raise ValueError(f"unknown task {task!r}; this world has {', '.join(self.tasks)}")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return read_questions(self.split_files[task][split])

    def to_dict(self) -> dict:
        return {
            "root": str(self.root),
            "seed": self.seed,
            "config_hash": self.config_hash,
            "task_dir": str(self.task_dir),
            "in_domain_tasks": list(self.in_domain_tasks),
            "ood_tasks": list(self.ood_tasks),
            "split_files": {t: {s: str(p) for s, p in files.items()} for t, files in self.split_files.items()},
            "train_split_files": {t: str(p) for t, p in self.train_split_files.items()},
            "tokenizer_dir": str(self.tokenizer_dir),
            "student_base_dir": str(self.student_base_dir),
            "teacher_base_dir": str(self.teacher_base_dir),
            "teacher_dir": str(self.teacher_dir),
            "bayes": self.bayes,
        }

    @classmethod
    def load(cls, world_dir: Path) -> "DemoWorld":
        """Read a complete world folder (raises ValueError when its manifest is missing or foreign)."""
        world_dir = Path(world_dir)
        manifest = read_manifest(world_dir)
        if manifest is None:
            raise ValueError(f"{world_dir} is not a complete demo world (no valid {MANIFEST_NAME})")
        paths = manifest["paths"]
        split_files = {
            task: {split: world_dir / rel for split, rel in files.items()} for task, files in paths["split_files"].items()
        }
        in_domain = tuple(manifest["in_domain_tasks"])
        return cls(
            root=world_dir,
            seed=int(manifest["seed"]),
            config_hash=manifest["config_hash"],
            task_dir=world_dir / paths["task_dir"],
            in_domain_tasks=in_domain,
            ood_tasks=tuple(manifest["ood_tasks"]),
            split_files=split_files,
            train_split_files={task: split_files[task]["train"] for task in in_domain},
            tokenizer_dir=world_dir / paths["tokenizer_dir"],
            student_base_dir=world_dir / paths["student_base_dir"],
            teacher_base_dir=world_dir / paths["teacher_base_dir"],
            teacher_dir=world_dir / paths["teacher_dir"],
            bayes=manifest["bayes"],
        )


def read_manifest(world_dir: Path) -> dict | None:
    """The manifest of ``world_dir`` if it is a complete world of this format, else None."""
    path = Path(world_dir) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT or manifest.get("complete") is not True:
        return None
    return manifest
