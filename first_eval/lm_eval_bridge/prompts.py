"""A task's documents as the (prompt, completion) strings lm-eval scores, rendered by lm-eval's own task object.

For a document, the prompt is ``task.fewshot_context(doc, num_fewshot=0)`` (description, ``doc_to_text``,
``gen_prefix``, and the chat template with ``--apply_chat_template``), the completion is ``target_delimiter +
gold choice``, both taken from ``task.construct_requests`` at the gold index (``doc_to_target`` as an index or a
choice string, as lm-eval's ``process_results`` reads it). So a student trains on the very strings lm-eval scores.

``render_task_split`` renders one split of a task (the training split, or the validation split for a token-level
teacher temperature) through a variant YAML that ``include:``s the task and evaluates that split, offline, from the
task's dataset or from ``--data-dir`` files.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from first_eval.errors import InputError


@dataclass(frozen=True)
class TaskPrompts:
    """One split of an lm-eval task rendered as lm-eval scores it.

    Attributes:
        pairs: ``(prompt, completion)`` per document with a gold answer among its choices, in document order.
        n_documents: documents read (after ``limit``), including those without a valid gold.
        source: where the pairs came from (task, split, YAML, data files, rendering settings), for a manifest.
    """

    pairs: tuple[tuple[str, str], ...]
    n_documents: int
    source: dict[str, Any] = field(default_factory=dict)


def render_task_split(task: str, split_key: str = "training_split", data_dir: str | Path | None = None,
                      include_path: str | Path | None = None, limit: int | None = None, chat_tokenizer: Any = None,
                      system_instruction: str | None = None) -> TaskPrompts:
    """The split ``split_key`` of lm-eval multiple-choice task ``task`` (``training_split``, ``validation_split``, ...).

    ``data_dir``: read ``DIR/<task>/<split>.jsonl`` (the Hugging Face schema the task expects) instead of the task's
    dataset; ``include_path``: a folder of extra task YAMLs. Offline either way. ``limit``: the first N documents
    only. Documents whose gold index lies outside their choices are skipped (lm-eval scores them as wrong).
    ``chat_tokenizer``: render prompts with this tokenizer's chat template, as lm-eval's ``--apply_chat_template``
    does (``HFLM.apply_chat_template``); ``system_instruction``: lm-eval's ``--system_instruction``. Raises
    ``InputError`` (worded for ``--train-task``) for an unknown, grouped or non-multiple-choice task, a task without
    the split, a missing data file or a task lm-eval cannot build.
    """
    from first_eval.lm_eval_bridge.hf_wrapper import chat_template_of
    from first_eval.lm_eval_bridge.live import HF_HOME_FOLDER
    from first_eval.lm_eval_bridge.local_tasks import plan_local_tasks, write_local_tasks
    from first_eval.lm_eval_bridge.offline import offline_hf, quiet_lm_eval_logging
    from first_eval.lm_eval_bridge.task_lookup import find_task_definitions, require_multiple_choice

    include_paths = [Path(include_path).expanduser()] if include_path is not None else []
    for folder in include_paths:
        if not folder.is_dir():
            raise InputError(f"--include-path {folder}: no such folder")
    definitions = find_task_definitions([task], include_paths)
    if [d.name for d in definitions[task]] != [task]:
        members = ", ".join(d.name for d in definitions[task]) or "none found"
        raise InputError(f"--train-task {task!r} is a group or tag of tasks; name one task ({members})")
    require_multiple_choice(definitions)
    definition = definitions[task][0]
    split = definition.config.get(split_key)
    if not split:
        raise InputError(f"--train-task {task}: the task declares no {split_key} ({definition.yaml_path}); "
                         + ("give the training pairs as --train FILE.jsonl" if split_key == "training_split"
                            else "pass --teacher-temperature FLOAT"))
    with tempfile.TemporaryDirectory(prefix="first-train-task-") as scratch:
        # A variant of the task that evaluates the requested split, so only that split's data is needed.
        variant_dir = Path(scratch) / "variant"
        write_task_variant(definition.yaml_path, task, variant_dir, {
            "test_split": split, "training_split": split, "validation_split": None, "fewshot_split": split,
            "fewshot_config": None})
        task_folder, data_files = variant_dir, None
        if data_dir is not None:
            local = plan_local_tasks(find_task_definitions([task], [variant_dir]), Path(data_dir),
                                     Path(scratch) / "local", num_fewshot=0)
            write_local_tasks(local, Path(scratch) / "local")
            task_folder, data_files = Path(scratch) / "local", {s: str(p) for s, p in local[0].data_files.items()}
        with offline_hf(Path(scratch) / HF_HOME_FOLDER), quiet_lm_eval_logging(False):
            task_object = _load_task(task, task_folder)
            docs = list(task_object.test_docs() or [])  # the variant's test split is the requested one
            if limit is not None:
                docs = docs[:limit]
            chat = chat_template_of(chat_tokenizer) if chat_tokenizer is not None else None
            pairs = tuple(pair for index, doc in enumerate(docs)
                          if (pair := render_task_doc(task_object, doc, index, chat, system_instruction)))
    source = {"kind": "lm-eval task", "task": task, "split": split, "task_yaml": str(definition.yaml_path),
              "data_files": data_files, "skipped_documents": len(docs) - len(pairs), "limit": limit,
              "target_delimiter": task_object.config.target_delimiter,
              "apply_chat_template": chat_tokenizer is not None, "system_instruction": system_instruction}
    return TaskPrompts(pairs, len(docs), source)


def render_task_doc(task: Any, doc: dict, doc_id: int = 0, chat_template: Callable[..., str] | None = None,
                    system_instruction: str | None = None) -> tuple[str, str] | None:
    """lm-eval's 0-shot request for ``doc`` at its gold choice, as ``(prompt, completion)``; None without a valid gold.

    ``task``: a built lm-eval task; ``chat_template``: the callable lm-eval renders chat prompts with
    (``--apply_chat_template``, see ``chat_template_of``), or None."""
    context = task.fewshot_context(doc=doc, num_fewshot=0, gen_prefix=task.doc_to_prefix(doc),
                                   system_instruction=system_instruction, apply_chat_template=chat_template is not None,
                                   chat_template=chat_template)
    requests = task.construct_requests(doc=doc, ctx=context, metadata=(task.config.task, doc_id, 1),
                                       apply_chat_template=chat_template is not None, chat_template=chat_template)
    n_choices = len(task.doc_to_choice(doc))
    gold = task.doc_to_text(doc) if task.multiple_input else task.doc_to_target(doc)
    if isinstance(gold, list):  # several acceptable answers: train on the first
        gold = gold[0] if gold else None
    if isinstance(gold, str):
        choices = task.doc_to_choice(doc)
        gold = choices.index(gold) if gold in choices else None
    if not isinstance(gold, (int, np.integer)) or not 0 <= gold < n_choices:
        return None
    prompt, completion = requests[int(gold)].args[:2]
    return prompt, completion


def write_task_variant(source_yaml: Path, task: str, folder: Path, overrides: dict[str, Any]) -> Path:
    """Write ``folder/<task>.yaml``: ``include:`` lm-eval's ``source_yaml``, keep the name, override some keys."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{''.join(c if c.isalnum() or c in '-_.' else '_' for c in task)}.yaml"
    body = {"include": str(Path(source_yaml).resolve()), "task": task, **overrides}
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def _load_task(task: str, folder: Path) -> Any:
    from first_eval.lm_eval_bridge.task_loading import load_task_objects

    return load_task_objects([task], [folder], include_defaults=False,
                             failure=f"--train-task {task}: lm-eval could not build the task's training split offline",
                             hint=f"pass --data-dir DIR with DIR/{task}/<split>.jsonl")[task]
