"""Write a world's questions as lm-eval tasks: one JSONL per split and one YAML per task.

The YAML is a plain local-data ``multiple_choice`` task (lm-eval 0.4.x)::

    task: first_demo_csqa
    dataset_path: json
    dataset_kwargs: {data_files: {train: /abs/train.jsonl, validation: ..., test: ...}}
    output_type: multiple_choice
    training_split: train / validation_split: validation / test_split: test
    doc_to_text: "Question: {{question}}\\nAnswer:"
    doc_to_choice: choices        # a field of the doc: the list of answer words
    doc_to_target: label          # a field of the doc: the gold index
    metric_list: [acc, acc_norm]

Data paths are absolute and point at the world's *final* folder (the build writes into a temporary
folder and renames it at the end), so ``TaskManager(include_path=task_dir)`` works from anywhere; a world
found somewhere else (moved, copied) has its YAMLs re-pointed when it is opened (``relocate_task_yamls``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from first_demo.questions import SPLITS, Question

DOC_TO_TEXT = "Question: {{question}}\nAnswer:"


def write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_questions(path: Path) -> list[Question]:
    """The questions of one split file (``Question.from_dict`` of every line)."""
    with Path(path).open(encoding="utf-8") as handle:
        return [Question.from_dict(json.loads(line)) for line in handle if line.strip()]


def task_yaml(task_name: str, data_files: dict[str, Path]) -> dict:
    """The lm-eval task config (as a dict) for ``task_name`` reading ``data_files[split]``."""
    missing = [split for split in SPLITS if split not in data_files]
    if missing:
        raise ValueError(f"task {task_name!r} has no file for split(s) {', '.join(missing)}")
    return {
        "task": task_name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {split: str(Path(data_files[split]).resolve()) for split in SPLITS}},
        "output_type": "multiple_choice",
        "training_split": "train",
        "validation_split": "validation",
        "test_split": "test",
        "doc_to_text": DOC_TO_TEXT,
        "doc_to_choice": "choices",
        "doc_to_target": "label",
        "target_delimiter": " ",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0},
    }


def write_task(
    task_name: str, questions_by_split: dict[str, list[Question]], build_task_dir: Path, final_task_dir: Path
) -> dict[str, Path]:
    """Write ``{build_task_dir}/data/{task}/{split}.jsonl`` and ``{build_task_dir}/{task}.yaml``.

    The YAML names the files under ``final_task_dir`` (where ``build_task_dir`` will be renamed to).
    Returns the final path of every split file.
    """
    import yaml

    final_files: dict[str, Path] = {}
    for split in SPLITS:
        relative = Path("data") / task_name / f"{split}.jsonl"
        write_jsonl(build_task_dir / relative, [q.to_dict() for q in questions_by_split[split]])
        final_files[split] = final_task_dir / relative
    config = task_yaml(task_name, final_files)
    (build_task_dir / f"{task_name}.yaml").write_text(
        yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=1000), encoding="utf-8"
    )
    return final_files


def relocate_task_yamls(task_dir: Path) -> list[str]:
    """Point every task YAML of ``task_dir`` at the split files under ``task_dir/data`` (after the world folder was
    moved or copied: lm-eval needs absolute data paths). Rewrites only YAMLs whose paths differ, each atomically;
    returns the tasks rewritten."""
    import yaml

    task_dir = Path(task_dir).resolve()
    rewritten = []
    for path in sorted(task_dir.glob("*.yaml")):
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        name = config.get("task")
        wanted = {split: str(task_dir / "data" / name / f"{split}.jsonl") for split in SPLITS}
        if (config.get("dataset_kwargs") or {}).get("data_files") == wanted:
            continue
        config["dataset_kwargs"] = {"data_files": wanted}
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=1000), encoding="utf-8")
        partial.replace(path)
        rewritten.append(name)
    return rewritten
