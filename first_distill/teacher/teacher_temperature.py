"""Where the teacher's temperature T comes from (FIRST's "trustworthy maximization", Shum et al., EMNLP 2024).

FIRST re-scales the fine-tuned teacher before storing its knowledge: the stored distribution per position is
``softmax(logits / T)``, with T chosen so the teacher's confidence matches its accuracy. Four sources
(``--teacher-temperature`` and ``--calibrators-from``):

- ``auto``: run lm-eval on the validation split of the task (``first_eval``'s live bridge, offline; a task with
  a test split is evaluated through a YAML variant ``include:``-ing it with ``test_split: null``), fit
  ``TemperatureScaling`` (minimum NLL of the gold choice, Guo et al. 2017) on the per-choice log-likelihoods, and
  record the teacher's ECE before (T = 1) and after (out-of-fold, 5-fold cross-fitting, so the figure is honest);
- ``--calibrators-from calibrators.json``: the temperature a ``first report`` run already fit;
- a number: that T; ``none``: T = 1, recorded as disabled (the ``topk-notemp`` ablation).

Note the approximation FIRST makes: T is fit on choice scores ``sum_t log p(token_t)`` and applied to token
logits. For single-token answers (" A", " B", ...) the two agree up to the renormalisation over the choices;
for longer answers ``softmax(logits / T)`` is only the per-token analogue, and summed log-likelihoods, which
grow with answer length, pull T up: SmolLM2-135M-Instruct on 60 ARC-Easy validation questions (answers of a
few words) gets T = 6.1, a nearly flat token distribution (store it with 16-bit probabilities).
"""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from first_eval.errors import InputError

SOURCES = ("auto", "calibrators", "fixed", "none")
DEFAULT_FOLDS = 5
DEFAULT_BINS = 15


@dataclass(frozen=True)
class TeacherTemperature:
    """The temperature the stored teacher distribution is computed at, and the evidence for it.

    Attributes:
        value: T > 0 (1.0 when disabled).
        source: one of ``SOURCES``.
        task: the task T was fit on (auto, calibrators), else None.
        ece_before: the teacher's ECE at T = 1 on that task's questions (auto; calibrators when metrics.json is beside it).
        ece_after: its ECE after temperature scaling, out-of-fold (cross-fitted).
        details: split, question count, accuracy, NLL, file paths and hashes: whatever the source knows.
    """

    value: float
    source: str
    task: str | None = None
    ece_before: float | None = None
    ece_after: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        if not (isinstance(self.value, (int, float)) and math.isfinite(self.value) and self.value > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {self.value!r}")

    @property
    def enabled(self) -> bool:
        return self.source != "none"

    @property
    def label(self) -> str:
        """One line for the store's ``temperature_source``."""
        if self.source == "auto" and self.details.get("level") == "token":
            return (f"auto: token-level NLL fit on the gold answer tokens of {self.task} "
                    f"{self.details.get('split', 'validation')} ({self.details.get('n_questions')} questions, "
                    f"{self.details.get('n_positions')} tokens)")
        if self.source == "auto":
            return (f"auto: TemperatureScaling on lm-eval {self.task} {self.details.get('split', 'validation')} "
                    f"({self.details.get('n_questions')} questions)")
        if self.source == "calibrators":
            return f"calibrators: {self.details.get('path')} [{self.task}]"
        return "fixed" if self.source == "fixed" else "none (temperature disabled, T = 1)"

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source, "enabled": self.enabled, "task": self.task,
                "ece_before": self.ece_before, "ece_after": self.ece_after, "details": dict(self.details)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TeacherTemperature":
        return cls(value=float(data["value"]), source=str(data["source"]), task=data.get("task"),
                   ece_before=data.get("ece_before"), ece_after=data.get("ece_after"),
                   details=dict(data.get("details") or {}))


def parse_temperature_option(text: str | float | None) -> str | float | None:
    """``--teacher-temperature``: ``"auto"``, ``"none"``, a number > 0, or None (unset) -> the same, checked.

    A ``TeacherTemperature`` already resolved (``first distill`` fits T once, then hands the value itself to
    extraction) passes through unchanged, so its source and evidence reach the store's manifest."""
    if isinstance(text, TeacherTemperature):
        return text
    if text is None or (isinstance(text, str) and text.strip().lower() in ("auto", "none")):
        return text.strip().lower() if isinstance(text, str) else None
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise InputError(f"--teacher-temperature {text!r}: must be auto, none or a number > 0") from None
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"--teacher-temperature {text!r}: must be a finite number > 0 (or auto, none)")
    return value


def fixed_temperature(value: float) -> TeacherTemperature:
    return TeacherTemperature(float(value), "fixed")


def no_temperature() -> TeacherTemperature:
    return TeacherTemperature(1.0, "none")


# ----------------------------------------------------------------------------------------- calibrators.json


def temperature_from_calibrators(path: str | Path, task: str | None = None) -> TeacherTemperature:
    """The temperature of a ``first report`` ``calibrators.json``: ``{"tasks": {TASK: {"temperature": {"temperature": T}}}}``.

    Picks ``task``'s entry, else the only one; ``InputError`` listing the tasks otherwise. When ``metrics.json``
    lies beside it, the task's ECE before and after (cross-fitted) temperature scaling come from there.
    """
    from first_distill.store.fingerprint import file_sha256

    path = Path(path).expanduser()
    where = f"--calibrators-from {path}"
    if path.is_dir():
        path = path / "calibrators.json"
    document = _read_json(path, where)
    tasks = document.get("tasks") if isinstance(document, dict) else None
    if not isinstance(tasks, dict) or not tasks:
        raise InputError(f"{where}: no 'tasks' in it; pass the calibrators.json a `first report` run wrote")
    if task in tasks:
        name = task
    elif len(tasks) == 1:
        name = next(iter(tasks))
    else:
        wanted = f"no entry for task {task!r}" if task else "several tasks and no --train-task to choose"
        raise InputError(f"{where}: {wanted}; it holds {', '.join(sorted(tasks))}")
    fitted = (tasks[name] or {}).get("temperature") if isinstance(tasks[name], dict) else None
    value = fitted.get("temperature") if isinstance(fitted, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise InputError(f"{where}: task {name!r} has no fitted temperature (tasks.{name}.temperature.temperature is "
                         f"{value!r}); rerun `first report` with --calibrators temperature")
    details = {"path": str(path.resolve()), "sha256": file_sha256(path), "score_mode": document.get("score_mode"),
               **{key: fitted.get(key) for key in ("at_bound", "nll", "n_fit") if key in fitted}}
    ece_before = ece_after = None
    metrics_path = path.with_name("metrics.json")
    if metrics_path.is_file():
        metrics = (_read_json(metrics_path, str(metrics_path)).get("tasks") or {}).get(name) or {}
        ece_before = metrics.get("ece")
        ece_after = ((metrics.get("calibrated") or {}).get("temperature") or {}).get("ece")
        details["metrics_path"] = str(metrics_path.resolve())
    return TeacherTemperature(float(value), "calibrators", task=name, ece_before=ece_before, ece_after=ece_after,
                              details=details)


def _read_json(path: Path, where: str) -> Any:
    if not path.is_file():
        raise InputError(f"{where}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{where}: not valid JSON ({error})") from None


# -------------------------------------------------------------------------------------------------- auto


def temperature_from_scores(scores: Any, task: str | None = None, n_bins: int = DEFAULT_BINS,
                            n_folds: int = DEFAULT_FOLDS, seed: int = 0) -> TeacherTemperature:
    """Fit ``TemperatureScaling`` on a task's ``ChoiceScores`` (n questions); ECE at T = 1 and out-of-fold after.

    ``ece_after`` comes from ``min(n_folds, n)``-fold cross-fitting (each question scaled by a T fit without it);
    ``details["ece_after_in_sample"]`` is the ECE at the T fit on all n. A T at the search bound means the scores
    carry no usable confidence (every answer right, or gold ranked at chance): ``InputError``.
    """
    from first_eval.calibrators import TemperatureAtBoundWarning, TemperatureScaling, cross_fit
    from first_eval.metrics import ece

    n = scores.n_questions
    if n < 2:
        raise InputError(f"--teacher-temperature auto: {n} question(s) in {task or 'the task'}'s validation split; "
                         "temperature scaling needs at least 2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TemperatureAtBoundWarning)
        scaler = TemperatureScaling().fit(scores)
        crossed = cross_fit("temperature", scores, n_folds=min(n_folds, n), seed=seed)
    raw = scores.probabilities()
    accuracy = float(raw.correct.mean())
    if scaler.at_bound_ is not None:
        raise InputError(
            f"--teacher-temperature auto: the NLL-optimal temperature on {task or 'the task'} lies at the search "
            f"bound T = {scaler.temperature_:g} (accuracy {accuracy:.1%} on {n} questions: the teacher's scores carry "
            "no usable confidence); pass --teacher-temperature FLOAT")
    scaled = scores.probabilities(scaler.temperature_)
    details = {"n_questions": int(n), "accuracy": accuracy, "score_mode": scores.score_mode,
               "nll_before": float(-scores.gold_log_probs(1.0).mean()), "nll_after": float(scaler.nll_),
               "mean_confidence_before": float(raw.confidences.mean()),
               "mean_confidence_after": float(scaled.confidences.mean()),
               "ece_after_in_sample": float(ece(scaled.confidences, scaled.correct, n_bins=n_bins)),
               "fold_temperatures": crossed.fold_temperatures, "n_folds": crossed.n_folds, "n_bins": n_bins}
    return TeacherTemperature(float(scaler.temperature_), "auto", task=task,
                              ece_before=float(ece(raw.confidences, raw.correct, n_bins=n_bins)),
                              ece_after=float(ece(crossed.probs.confidences, crossed.probs.correct, n_bins=n_bins)),
                              details=details)


@dataclass(frozen=True)
class TemperatureFitConfig:
    """An lm-eval audit of the teacher for ``auto``.

    Attributes:
        model_args: lm-eval ``--model-args`` of the teacher (``pretrained=DIR,dtype=float32[,gguf_file=F]``).
        task: the lm-eval multiple-choice task whose validation split calibrates the teacher.
        data_dir, include_path: as ``first report`` (local split files; extra task YAMLs).
        limit: at most this many validation questions (None: all).
        batch_size, device, seed: lm-eval's.
        score_mode: ``sum`` (lm-eval's acc) or ``char-norm`` (acc_norm) choice scores.
        level: ``choice`` (fit on lm-eval's per-choice scores, as ``first report``) or ``token`` (fit on the
            teacher's next-token distributions at the gold answer tokens, ``token_temperature.py``; needs ``teacher``).
        teacher: the teacher's ``ModelLocation`` (for ``token``).
        apply_chat_template, system_instruction: prompts rendered with the teacher's chat template, as everywhere
            else in the run.
    """

    model_args: str
    task: str
    data_dir: Path | None = None
    include_path: Path | None = None
    limit: int | None = None
    batch_size: int = 8
    device: str | None = None
    seed: int = 0
    score_mode: str = "sum"
    level: str = "choice"
    teacher: Any = None
    apply_chat_template: bool = False
    system_instruction: str | None = None


TEMPERATURE_LEVELS = ("choice", "token")


def fit_teacher_temperature(config: TemperatureFitConfig) -> TeacherTemperature:
    """Run lm-eval on the validation split of ``config.task`` with the teacher, then ``temperature_from_scores``.

    ``config.task`` may name several tasks separated by commas (a teacher fine-tuned on several tasks): their
    validation questions are pooled into one fit, so one T serves the whole store.
    """
    from first_eval.lm_eval_bridge import (
        LiveRunConfig, find_task_definitions, require_multiple_choice, run_lm_eval, write_task_variant)
    from first_eval.scores import concatenate_choice_scores

    include_paths = [Path(config.include_path)] if config.include_path is not None else []
    for folder in include_paths:
        if not folder.is_dir():
            raise InputError(f"--include-path {folder}: no such folder")
    tasks = [name.strip() for name in config.task.split(",") if name.strip()]
    definitions = find_task_definitions(tasks, include_paths)
    for task in tasks:
        if [d.name for d in definitions[task]] != [task]:
            raise InputError(f"--teacher-temperature auto: {task!r} is a group or tag of tasks; name one task")
    require_multiple_choice(definitions)
    splits = {}
    for task in tasks:
        splits[task] = definitions[task][0].config.get("validation_split")
        if not splits[task]:
            raise InputError(f"--teacher-temperature auto: task {task} has no validation split to calibrate the "
                             "teacher on; pass --teacher-temperature FLOAT or --calibrators-from calibrators.json")
    label = "+".join(tasks)
    if config.level == "token":
        return fit_token_level(config, tasks, label, splits)
    with tempfile.TemporaryDirectory(prefix="first-teacher-temperature-") as scratch:
        variant = Path(scratch) / "variant"
        for task in tasks:
            write_task_variant(definitions[task][0].yaml_path, task, variant, {"test_split": None})
        run = run_lm_eval(LiveRunConfig(
            tasks=tuple(tasks), output_dir=Path(scratch) / "lm-eval", model="hf", model_args=config.model_args,
            include_path=variant, data_dir=config.data_dir, num_fewshot=0, limit=config.limit,
            batch_size=config.batch_size, device=config.device, seed=config.seed,
            apply_chat_template=config.apply_chat_template, system_instruction=config.system_instruction))
        by_task = {samples.task: samples.choice_scores(config.score_mode) for samples in run.task_samples}
        scores = concatenate_choice_scores([by_task[task] for task in tasks])
        result = temperature_from_scores(scores, task=label, seed=config.seed)
        lm_eval_metrics = {task: run.lm_eval_metrics.get(task, {}) for task in tasks}
    details = {**result.details, "split": ", ".join(sorted(set(splits.values()))), "limit": config.limit,
               "lm_eval": lm_eval_metrics if len(tasks) > 1 else lm_eval_metrics[tasks[0]],
               "task_yaml": ", ".join(str(definitions[task][0].yaml_path) for task in tasks),
               "questions_per_task": {task: int(by_task[task].n_questions) for task in tasks},
               "data_dir": None if config.data_dir is None else str(Path(config.data_dir).resolve())}
    return TeacherTemperature(result.value, "auto", task=label, ece_before=result.ece_before,
                              ece_after=result.ece_after, details=details)


def fit_token_level(config: TemperatureFitConfig, tasks: list[str], label: str, splits: dict) -> TeacherTemperature:
    """``level="token"``: the teacher's logits at the gold answer tokens of the validation questions -> T."""
    import torch

    from first_distill.model_folders import load_teacher, load_text_config, load_tokenizer
    from first_distill.teacher.token_temperature import fit_token_temperature, gold_token_logits
    from first_distill.training_data import task_training_set, tokenize_examples

    if config.teacher is None:
        raise ValueError("level='token' needs TemperatureFitConfig.teacher (a ModelLocation)")
    tokenizer = load_tokenizer(config.teacher, "--teacher")
    max_length = int(getattr(load_text_config(config.teacher, "--teacher"), "max_position_embeddings", None) or 2048)
    examples = []
    for task in tasks:
        questions = task_training_set(task, config.data_dir, config.include_path, config.limit,
                                      split_key="validation_split",
                                      chat_tokenizer=tokenizer if config.apply_chat_template else None,
                                      system_instruction=config.system_instruction)
        examples.extend(tokenize_examples(questions.examples, tokenizer, max_length))
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_teacher(config.teacher, device, torch.float32)
    logits, gold, owner = gold_token_logits(model, examples, config.batch_size, device)
    del model
    fit = fit_token_temperature(logits, gold, owner, seed=config.seed)
    if fit.at_bound is not None:
        raise InputError(f"--teacher-temperature auto (token level): the NLL-optimal temperature on {label} lies at the "
                         f"search bound T = {fit.temperature:g}; pass --teacher-temperature FLOAT")
    details = {"level": "token", "split": ", ".join(sorted(set(splits.values()))), "limit": config.limit,
               "n_questions": fit.n_questions, "n_positions": fit.n_positions, "nll_before": fit.nll_before,
               "nll_after": fit.nll_after, "fold_temperatures": fit.fold_temperatures,
               "ece": "top-1 next-token ECE at the gold answer tokens (after: cross-fitted over questions)",
               "data_dir": None if config.data_dir is None else str(Path(config.data_dir).resolve())}
    return TeacherTemperature(fit.temperature, "auto", task=label, ece_before=fit.ece_before, ece_after=fit.ece_after,
                              details=details)


def resolve_teacher_temperature(option: str | float | None, calibrators_from: str | Path | None = None,
                                task: str | None = None, fit_config: TemperatureFitConfig | None = None) -> TeacherTemperature:
    """``--teacher-temperature`` (auto | none | FLOAT | None = auto) with ``--calibrators-from`` -> ``TeacherTemperature``.

    ``auto`` needs ``fit_config`` (the task to audit the teacher on); it runs lm-eval.
    """
    option = parse_temperature_option(option)
    if calibrators_from is not None:
        if option not in (None, "auto"):
            raise InputError(f"give either --teacher-temperature {option} or --calibrators-from {calibrators_from}, not both")
        return temperature_from_calibrators(calibrators_from, task)
    if option == "none":
        return no_temperature()
    if isinstance(option, float):
        return fixed_temperature(option)
    if fit_config is None:
        raise InputError("--teacher-temperature auto needs a task to calibrate the teacher on (--train-task NAME, or "
                         "--calibration-task NAME with --train FILE); or pass --teacher-temperature FLOAT|none or "
                         "--calibrators-from calibrators.json")
    return fit_teacher_temperature(fit_config)
