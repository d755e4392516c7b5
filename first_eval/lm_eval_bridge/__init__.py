"""Everything that touches lm-eval: running it, reading its files, task variants, prompts, tokenising like it.

The public API is ``__all__``; import it from here (``from first_eval.lm_eval_bridge import run_lm_eval``). Names
are loaded on first use, so importing the package imports neither lm-eval nor torch (``first --help`` stays
instant), and lm-eval itself is imported only inside the functions that call it.

- running lm-eval: ``LiveRunConfig``, ``LiveRunResult``, ``run_lm_eval`` (``live``); its option checks
  ``check_run_options``, ``check_model``, ``check_model_type``, ``check_chat_template``, ``parse_model_args``
  (``run_checks``);
- reading its samples files: ``TaskSamples``, ``read_samples_path``, ``task_samples_from_records``,
  ``task_name_from_path`` (``samples``);
- finding tasks: ``TaskDefinition``, ``find_task_definitions``, ``require_multiple_choice``, ``read_task_yaml``,
  ``builtin_tasks_dir`` (``task_lookup``); building them: ``load_task_objects`` (``task_loading``);
- task variants: local data (``prepare_local_tasks``, ``plan_local_tasks``, ``write_local_tasks``), lettered
  questions (``prepare_lettered_tasks``, ``lettered_prompt``, ``check_format``, ``LETTERED_SUFFIX``), a task that
  evaluates another split (``write_task_variant``);
- prompts and tokens: ``render_task_split``, ``render_task_doc``, ``TaskPrompts`` (``prompts``); ``encode_pairs``,
  ``encode_pair``, ``chat_template_of`` (``hf_wrapper``: lm-eval's HF wrapper over a tokenizer alone);
- the offline environment: ``offline_hf``, ``quiet_lm_eval_logging``, ``user_hf_home`` (``offline``).
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the submodule that defines it
_EXPORTS = {
    "LiveRunConfig": "live", "LiveRunResult": "live", "run_lm_eval": "live", "lm_eval_accuracy": "live",
    "HF_HOME_FOLDER": "live",
    "check_run_options": "run_checks", "check_model": "run_checks", "check_model_type": "run_checks",
    "check_chat_template": "run_checks", "parse_model_args": "run_checks", "announce_task_code": "run_checks",
    "TaskSamples": "samples", "read_samples_path": "samples", "task_samples_from_records": "samples",
    "task_name_from_path": "samples",
    "TaskDefinition": "task_lookup", "find_task_definitions": "task_lookup",
    "require_multiple_choice": "task_lookup", "read_task_yaml": "task_lookup", "builtin_tasks_dir": "task_lookup",
    "load_task_objects": "task_loading",
    "LocalTask": "local_tasks", "prepare_local_tasks": "local_tasks", "plan_local_tasks": "local_tasks",
    "write_local_tasks": "local_tasks", "eval_split_of": "local_tasks",
    "LetteredTask": "lettered", "LetteredTasks": "lettered", "prepare_lettered_tasks": "lettered",
    "lettered_prompt": "lettered", "is_letter_sequence": "lettered", "check_format": "lettered",
    "LETTERED_SUFFIX": "lettered", "FORMATS": "lettered",
    "TaskPrompts": "prompts", "render_task_split": "prompts", "render_task_doc": "prompts",
    "write_task_variant": "prompts",
    "encode_pairs": "hf_wrapper", "encode_pair": "hf_wrapper", "chat_template_of": "hf_wrapper",
    "offline_hf": "offline", "quiet_lm_eval_logging": "offline", "user_hf_home": "offline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
