"""Run lm-eval itself, offline, and hand its per-question scores to the audit.

``run_lm_eval(LiveRunConfig(...))`` does what ``lm_eval run --log_samples --output_path DIR`` does:
``lm_eval.simple_evaluate(..., log_samples=True)`` with a ``TaskManager``, then lm-eval's
``EvaluationTracker`` writes ``DIR/<model>/results_<date>.json`` and one
``samples_<task>_<date>.jsonl`` per task, the files ``first report --samples`` re-audits. It returns
lm-eval's results, each task's in-memory records as ``TaskSamples``, lm-eval's own ``acc`` /
``acc_norm``, and the paths written.

Everything is checked before any model is loaded (task names, output types, the model folder,
``--limit``, the ``--data-dir`` files, each task's data), and problems raise ``InputError`` with one
line. Runs are offline (see ``offline.py``); with ``data_dir`` the tasks are lm-eval's own YAMLs fed
from local files (see ``local_tasks.py``).
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from first_eval.errors import InputError
from first_eval.lm_eval_bridge.lettered import LetteredTasks, prepare_lettered_tasks
from first_eval.lm_eval_bridge.local_tasks import eval_split_of, plan_local_tasks, write_local_tasks
from first_eval.lm_eval_bridge.run_checks import announce_task_code, check_run_options, parse_model_args
from first_eval.lm_eval_bridge.offline import offline_hf, quiet_lm_eval_logging
from first_eval.lm_eval_bridge.samples import TaskSamples, task_samples_from_records
from first_eval.lm_eval_bridge.task_lookup import (
    TaskDefinition,
    find_task_definitions,
    require_multiple_choice,
    task_definitions_from_manager,
)

LOCAL_TASKS_FOLDER = "local_tasks"  # under output_dir: the YAMLs written for --data-dir
LETTERED_TASKS_FOLDER = "letter_tasks"  # under output_dir: the lettered variants written for --format letters
HF_HOME_FOLDER = ".hf_home"  # under output_dir: HF_HOME unless the user set one
LIVE_SOURCE = "lm-eval run"  # TaskSamples.source of in-memory records (samples.py words errors by it)


@dataclass(frozen=True)
class LiveRunConfig:
    """One lm-eval run, in lm-eval's CLI words.

    Attributes:
        tasks: lm-eval task names (``--tasks``); groups and tags are expanded when checking them.
        output_dir: where lm-eval's results and samples files go (``--output_path``).
        model: lm-eval model type (``--model``).
        model_args: ``"pretrained=DIR,dtype=float32,gguf_file=NAME"`` (``--model_args``).
        include_path: a folder of extra task YAMLs (``--include_path``).
        data_dir: run lm-eval's task definitions over ``DIR/<task>/<split>.jsonl`` (see ``local_tasks.py``).
        num_fewshot: few-shot examples per prompt (``--num_fewshot``); None: each task's default.
        limit: at most this many questions per task (an int >= 1), or a fraction in (0, 1) (``--limit``).
        batch_size: ``--batch_size``: an int >= 1, ``"auto"`` or ``"auto:N"``.
        device: ``--device`` (``"cpu"``, ``"cuda:0"``); None: lm-eval's model default.
        seed: one seed for python, numpy, torch and few-shot sampling (``--seed``); None: lm-eval's defaults.
        format: ``cloze`` (each task as lm-eval defines it) or ``letters`` (its lettered variant, ``lettered.py``).
        apply_chat_template: render prompts with the model's chat template (``--apply_chat_template``).
        system_instruction: a system message for every prompt (``--system_instruction``).
        verbose: show lm-eval's INFO logging.
    """

    tasks: Sequence[str]
    output_dir: Path
    model: str = "hf"
    model_args: str = ""
    include_path: Path | None = None
    data_dir: Path | None = None
    num_fewshot: int | None = None
    limit: int | float | None = None
    batch_size: int | str = 1
    device: str | None = None
    seed: int | None = None
    format: str = "cloze"
    apply_chat_template: bool = False
    system_instruction: str | None = None
    verbose: bool = False

    def __post_init__(self) -> None:
        tasks = [self.tasks] if isinstance(self.tasks, str) else list(self.tasks)
        object.__setattr__(self, "tasks", tuple(t.strip() for task in tasks for t in str(task).split(",") if t.strip()))
        object.__setattr__(self, "output_dir", Path(self.output_dir).expanduser())
        for name in ("include_path", "data_dir"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value).expanduser())

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": list(self.tasks),
            "output_dir": str(self.output_dir),
            "model": self.model,
            "model_args": self.model_args,
            "include_path": None if self.include_path is None else str(self.include_path),
            "data_dir": None if self.data_dir is None else str(self.data_dir),
            "num_fewshot": self.num_fewshot,
            "limit": self.limit,
            "batch_size": self.batch_size,
            "device": self.device,
            "seed": self.seed,
            "format": self.format,
            "apply_chat_template": self.apply_chat_template,
            "system_instruction": self.system_instruction,
        }


@dataclass(frozen=True)
class LiveRunResult:
    """What one run produced.

    Attributes:
        config: the run's configuration.
        results: lm-eval's results dict as saved in ``results_path`` (``results``, ``configs``, ``config``, ...;
            the per-sample records are not in it).
        task_samples: one ``TaskSamples`` per task, from lm-eval's in-memory records (typed values).
        lm_eval_metrics: task -> lm-eval's aggregate ``acc`` (and ``acc_norm`` when the task reports it).
        results_path: lm-eval's ``results_<date>.json``.
        samples_paths: task -> lm-eval's ``samples_<task>_<date>.jsonl``.
        local_tasks_path: the folder of generated task YAMLs for ``data_dir`` runs, else None.
        hf_home: the Hugging Face cache folder the run used.
        lettered: the lettered tasks of a ``format="letters"`` run, else None.
    """

    config: LiveRunConfig
    results: dict[str, Any]
    task_samples: tuple[TaskSamples, ...]
    lm_eval_metrics: dict[str, dict[str, float]]
    results_path: Path
    samples_paths: dict[str, Path]
    local_tasks_path: Path | None
    hf_home: Path
    lettered: LetteredTasks | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "tasks": {s.task: {"n_questions": s.n_questions, **self.lm_eval_metrics.get(s.task, {})} for s in self.task_samples},
            "results_path": str(self.results_path),
            "samples_paths": {task: str(path) for task, path in self.samples_paths.items()},
            "local_tasks_path": None if self.local_tasks_path is None else str(self.local_tasks_path),
            "hf_home": str(self.hf_home),
            "lettered": None if self.lettered is None else self.lettered.to_dict(),
        }


def run_lm_eval(config: LiveRunConfig) -> LiveRunResult:
    """Run lm-eval offline on ``config``; see the module docstring. Raises ``InputError`` on bad input."""
    check_run_options(config)
    output_dir = _make_output_dir(config.output_dir)
    with offline_hf(output_dir / HF_HOME_FOLDER) as hf_home, quiet_lm_eval_logging(config.verbose):
        task_manager, local_tasks_path, definitions, run_tasks = _task_manager(config, output_dir)
        _check_tasks_load(task_manager, config, definitions, run_tasks)
        lettered = None
        if config.format == "letters":
            lettered = prepare_lettered_tasks(config.tasks, output_dir / LETTERED_TASKS_FOLDER, config.data_dir,
                                              config.include_path, config.num_fewshot, config.verbose)
            task_manager = _manager_for(lettered.folder, config)
            run_tasks = lettered.names
        results, samples, tracker = _evaluate(config, task_manager, run_tasks)
        notes = {task.name: (task.note,) for task in lettered.tasks} if lettered is not None else {}
        task_samples = tuple(
            task_samples_from_records(samples[task], task, LIVE_SOURCE, notes=notes.get(task, ()))
            for task in results["configs"] if task in samples
        )
        results_path, samples_paths = _save(tracker, results, samples)
    return LiveRunResult(
        config=config,
        results=results,
        task_samples=task_samples,
        lm_eval_metrics=lm_eval_accuracy(results),
        results_path=results_path,
        samples_paths=samples_paths,
        local_tasks_path=local_tasks_path,
        hf_home=hf_home,
        lettered=lettered,
    )


def lm_eval_accuracy(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Task -> ``{"acc": ..., "acc_norm": ...}`` from lm-eval's ``results["results"]`` (filter ``none``), leaf tasks only."""
    metrics: dict[str, dict[str, float]] = {}
    for task in results.get("configs", {}):
        row = results.get("results", {}).get(task, {})
        values = {name: float(row[f"{name},none"]) for name in ("acc", "acc_norm") if f"{name},none" in row}
        if values:
            metrics[task] = values
    return metrics


def _make_output_dir(output_dir: Path) -> Path:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"--output-dir {output_dir}: cannot create it ({error.strerror or error})") from None
    if not os.access(output_dir, os.W_OK):
        raise InputError(f"--output-dir {output_dir}: not writable")
    return output_dir.resolve()


def _task_manager(config: LiveRunConfig, output_dir: Path) -> tuple[Any, Path | None, list[TaskDefinition], tuple[str, ...]]:
    """An lm-eval ``TaskManager`` knowing the run's tasks (after checking they are multiple-choice), the
    generated task folder (``data_dir`` runs), the definitions of the tasks that will run, and the names to run
    (a ``data_dir`` run names the leaf tasks of a group: its generated folder holds no group YAML)."""
    from lm_eval.tasks import TaskManager

    metadata = parse_model_args(config.model_args)
    if config.data_dir is not None:
        include_paths = [config.include_path] if config.include_path is not None else []
        definitions = find_task_definitions(config.tasks, include_paths)
        require_multiple_choice(definitions)
        leaves = {task.name: [task] for task in _flatten(definitions)}
        local_path = output_dir / LOCAL_TASKS_FOLDER
        write_local_tasks(plan_local_tasks(leaves, config.data_dir, local_path, config.num_fewshot), local_path)
        # Only the generated folder is indexed (~1 s instead of ~8 s), and no default task can shadow it.
        return _manager_for(local_path, config), local_path, _flatten(definitions), tuple(leaves)
    include = str(config.include_path) if config.include_path is not None else None
    if config.include_path is not None:
        definitions = find_task_definitions(config.tasks, [config.include_path])
        announce_task_code(_flatten(definitions), Path(config.include_path))
        if _all_plain_tasks_under(definitions, Path(config.include_path)):
            # Every task is a plain task of the include path: index only that folder (~1 s instead of ~8 s).
            require_multiple_choice(definitions)
            return _manager_for(Path(config.include_path), config), None, _flatten(definitions), tuple(config.tasks)
    manager = TaskManager(include_path=include, metadata=metadata)
    definitions = task_definitions_from_manager(config.tasks, manager)
    require_multiple_choice(definitions)
    return manager, None, _flatten(definitions), tuple(config.tasks)


def _manager_for(folder: Path, config: LiveRunConfig) -> Any:
    """A ``TaskManager`` indexing ``folder`` alone."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(folder), include_defaults=False, metadata=parse_model_args(config.model_args))


def _all_plain_tasks_under(definitions: dict[str, list[TaskDefinition]], folder: Path) -> bool:
    """True when each name is one task (not a group or tag) whose YAML lies in ``folder``."""
    root = folder.expanduser().resolve()
    for name, found in definitions.items():
        if [d.name for d in found] != [name] or found[0].yaml_path is None:
            return False
        if not Path(found[0].yaml_path).resolve().is_relative_to(root):
            return False
    return True


def _flatten(definitions: dict[str, list[TaskDefinition]]) -> list[TaskDefinition]:
    return [task for tasks in definitions.values() for task in tasks]


def _check_tasks_load(task_manager: Any, config: LiveRunConfig, definitions: list[TaskDefinition],
                      run_tasks: Sequence[str]) -> None:
    """Build every task once (reads its data) so a missing dataset or bad file fails before the model loads.

    ``simple_evaluate`` builds them again after seeding, as lm-eval's CLI does (cached data: quick);
    this first build's warnings are hidden, the second one shows them.
    """
    lm_eval_logger = logging.getLogger("lm_eval")
    level = lm_eval_logger.level
    lm_eval_logger.setLevel(logging.ERROR)
    try:
        loaded = task_manager.load(list(run_tasks))
    except InputError:
        raise
    except Exception as error:  # lm-eval and datasets raise many types; all mean "this task's data cannot be read"
        raise InputError(_data_error_message(config, definitions, error)) from None
    finally:
        lm_eval_logger.setLevel(level)
    for name, task in loaded["tasks"].items():
        output_type = getattr(task, "OUTPUT_TYPE", None)
        if output_type != "multiple_choice":
            raise InputError(f"calibration needs multiple-choice tasks; {name} is {output_type}")


def _data_error_message(config: LiveRunConfig, definitions: list[TaskDefinition], error: Exception) -> str:
    detail = " ".join(str(error).split())[:300] or type(error).__name__
    tasks = ", ".join(config.tasks)
    if config.data_dir is not None:
        return (
            f"--data-dir {config.data_dir}: lm-eval could not build {tasks} from the files there "
            f"({type(error).__name__}: {detail}); each file must hold the records of the Hugging Face dataset the task reads"
        )
    example = f"{config.tasks[0]}/<split>"
    if definitions:
        example = f"{definitions[0].name}/{eval_split_of(definitions[0].config) or '<split>'}"
    return (
        f"--tasks {tasks}: lm-eval could not load the dataset offline ({type(error).__name__}: {detail}); "
        f"runs never download: pass --data-dir DIR with DIR/{example}.jsonl, or set HF_HOME to a cache holding it"
    )


def _evaluate(config: LiveRunConfig, task_manager: Any, run_tasks: Sequence[str]) -> tuple[dict, dict, Any]:
    import lm_eval
    from lm_eval.loggers import EvaluationTracker

    tracker = EvaluationTracker(output_path=str(config.output_dir.resolve()))
    seeds = {} if config.seed is None else {
        "random_seed": config.seed, "numpy_random_seed": config.seed,
        "torch_random_seed": config.seed, "fewshot_random_seed": config.seed,
    }
    results = lm_eval.simple_evaluate(
        model=config.model,
        model_args=config.model_args,
        tasks=list(run_tasks),
        num_fewshot=config.num_fewshot,
        batch_size=config.batch_size,
        device=config.device,
        limit=config.limit,
        log_samples=True,
        evaluation_tracker=tracker,
        task_manager=task_manager,
        apply_chat_template=config.apply_chat_template,
        system_instruction=config.system_instruction,
        **seeds,
    )
    if results is None:  # only non-zero ranks of a distributed run get None
        raise InputError("lm-eval returned no results (a non-zero rank of a distributed run?)")
    samples = results.pop("samples")
    return results, samples, tracker


def _save(tracker: Any, results: dict, samples: dict) -> tuple[Path, dict[str, Path]]:
    """Write results and samples as lm-eval's CLI does; the tracker stringifies records, so it gets copies."""
    tracker.save_results_aggregated(results=results, samples=samples)
    for task in results["configs"]:
        if task in samples:
            tracker.save_results_samples(task_name=task, samples=copy.deepcopy(samples[task]))
    folder = Path(tracker.output_path) / str(tracker.general_config_tracker.model_name_sanitized)
    date_id = getattr(tracker, "date_id", None)
    results_path = folder / f"results_{date_id}.json"
    samples_paths = {task: folder / f"samples_{task}_{date_id}.jsonl" for task in results["configs"] if task in samples}
    missing = [str(p) for p in [results_path, *samples_paths.values()] if not p.is_file()]
    if date_id is None or missing:  # the tracker logs a warning and carries on when it cannot write
        raise InputError(f"--output-dir {tracker.output_path}: lm-eval could not write {', '.join(missing) or 'its results'}")
    return results_path, samples_paths
