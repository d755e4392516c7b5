"""``DistillConfig``: the settings of one ``first distill`` run, checked once when built (``__post_init__``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from first_distill.run_layout import SCHEMA
from first_distill.trainer import TrainerSettings
from first_eval.errors import InputError
from first_eval.setting_checks import choice_problem, require, whole_number_problem

# Settings that may change between a run and its --resume.
RESUME_FREE_FIELDS = ("resume", "progress", "report_dir", "device")
DEFAULT_SAMPLES_PER_POSITION = 50


@dataclass(frozen=True)
class DistillConfig:
    """One ``first distill`` run (its flags).

    Attributes:
        teacher, student: model folders (or ``DIR/NAME.gguf``); they must share one tokenizer.
        output: the run folder (module docstring); report_dir: where report.html/metrics.json go (default output).
        eval_tasks: lm-eval multiple-choice tasks every model is audited on (their test split, else validation).
        train_tasks: lm-eval tasks whose training splits are the training pairs (pooled); or ``train``: a JSONL.
        data_dir, include_path: as ``first report`` (local split files; extra task YAMLs).
        variants: first_distill.variants names, in report order.
        top_k: teacher tokens stored per position. samples_per_position: draws per position for ``rs-kd``.
        teacher_temperature: ``auto`` (default), ``none`` or a number; calibrators_from: a calibrators.json.
        temperature_level: what ``auto`` fits T on: ``choice`` (lm-eval's answer scores; the paper's setting with
            one-token answers) or ``token`` (next-token distributions at the gold answer tokens; for longer answers).
        calibration_tasks: tasks whose validation splits fit ``auto`` (default: train_tasks).
        calibration_limit, train_limit, eval_limit: at most N questions of each.
        max_length: tokens kept per training example. prob_bits: 8 or 16 bits per stored probability.
        settings: training settings (epochs, lr, batch size, ...), the same for every variant.
        eval_batch_size, device: lm-eval's. n_bootstrap: resamples for the CIs.
        format: ``cloze`` (tasks as lm-eval defines them) or ``letters`` (every train, calibration and eval task as
            a lettered question, the bridge's ``prepare_lettered_tasks``; written into ``output/letter_tasks``).
        apply_chat_template, system_instruction: render every prompt (training pairs, T fit, audits) with the
            models' chat template and this system message, as lm-eval's ``--apply_chat_template``.
        resume: continue a killed run in ``output``. progress: progress bars on stderr.
    """

    teacher: Path
    student: Path
    output: Path
    eval_tasks: tuple[str, ...]
    train_tasks: tuple[str, ...] = ()
    train: Path | None = None
    data_dir: Path | None = None
    include_path: Path | None = None
    variants: tuple[str, ...] = ("first", "ce")
    top_k: int = 5
    samples_per_position: int = DEFAULT_SAMPLES_PER_POSITION
    teacher_temperature: str | float | None = None
    calibrators_from: Path | None = None
    temperature_level: str = "choice"
    calibration_tasks: tuple[str, ...] = ()
    calibration_limit: int | None = None
    train_limit: int | None = None
    eval_limit: int | None = None
    max_length: int | None = None
    prob_bits: int = 8
    settings: TrainerSettings = field(default_factory=TrainerSettings)
    eval_batch_size: int = 16
    device: str | None = None
    n_bootstrap: int = 1000
    format: str = "cloze"
    apply_chat_template: bool = False
    system_instruction: str | None = None
    resume: bool = False
    progress: bool = True
    report_dir: Path | None = None

    def __post_init__(self) -> None:
        require(*self.problems())

    def problems(self) -> list[str]:
        """Every invalid setting (those a look at the values decides; files, models and tasks are checked by
        ``first_distill.run_checks`` before anything runs), one message each."""
        from first_distill.teacher.teacher_temperature import parse_temperature_option
        from first_distill.training_data import check_max_length
        from first_distill.variants import parse_variants
        from first_eval.lm_eval_bridge import check_format

        found = []
        if bool(self.train_tasks) == (self.train is not None):
            found.append("give the training pairs with exactly one of --train-task NAME[,NAME] or --train FILE.jsonl")
        if not self.eval_tasks:
            found.append("--eval-tasks is empty; name the multiple-choice tasks to audit every model on")
        found += [whole_number_problem(getattr(self, name), flag, optional=True) for name, flag in (
            ("top_k", "--top-k"), ("samples_per_position", "--samples-per-position"),
            ("eval_batch_size", "--eval-batch-size"), ("calibration_limit", "--calibration-limit"),
            ("train_limit", "--limit"), ("eval_limit", "--eval-limit"))]
        found.append(whole_number_problem(self.n_bootstrap, "--bootstrap", low=0, optional=True))
        found.append(choice_problem(self.prob_bits, "--prob-bits", (8, 16)))
        found.append(choice_problem(self.temperature_level, "--temperature-level", ("choice", "token")))
        if self.system_instruction is not None and not self.system_instruction.strip():
            found.append("--system-instruction is empty; give the text of the system message or leave the flag out")
        for check in (lambda: parse_variants(self.variants), lambda: check_format(self.format),
                      lambda: check_max_length(self.max_length),
                      lambda: parse_temperature_option(self.teacher_temperature)):
            try:
                check()
            except InputError as error:
                found.append(str(error))
        return [problem for problem in found if problem]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings (paths resolved), as distill_config.json holds them."""
        from first_distill.run_folder import config_json

        return config_json(self, SCHEMA)
