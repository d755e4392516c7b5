"""``first distill``: the whole FIRST pipeline, end to end, with one before/after report.

    result = run_distill(DistillConfig(teacher=Path("runs/teacher"), student=Path("runs/student"),
                                       train_tasks=("arc_easy",), eval_tasks=("arc_easy", "arc_challenge"),
                                       data_dir=Path("../shared/datasets"), output=Path("runs/distill")))

1. Trustworthy teacher: its temperature T (``auto``: fitted by NLL on the validation split of the training
   task(s), pooled, with first_eval's ``TemperatureScaling``; or a number, ``none``, a calibrators.json).
2. Concentrated knowledge: the teacher's top-k tokens per completion position at T, extracted once per kind
   of knowledge the variants need (``variants.knowledge_needed``) and shared by them.
3. One student per variant (``first``, ``ce``, ``label-smoothing``, ...) from the same initial student, data
   order and schedule (``train.train_student``).
4. Audits with lm-eval and the calibration core: the teacher, the teacher with T applied to its choice
   scores (``teacher+ts``), every student, on every eval task (in- and out-of-domain).
5. ``report.html`` + ``metrics.json`` (schema ``first.distill/1``) in ``report_dir`` (default ``output``).

The run folder's names: ``first_distill.run_layout``; the settings: ``first_distill.distill_config``; the input
checks: ``first_distill.run_checks``; the audits: ``first_distill.model_audits``.

Every step is resumable: ``--resume`` after a kill reuses what is complete (stores, students, audits),
continues the unfinished extraction or training from its last shard or checkpoint, and redoes the rest.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from first_distill.distill_config import RESUME_FREE_FIELDS, DistillConfig
from first_distill.distill_report import write_distill_report
from first_distill.model_audits import audit_models
from first_distill.run_checks import chat_tokenizer, check_inputs, check_models, check_tasks
from first_distill.run_layout import (
    CONFIG_FILE, REPORT_FILE, TEACHER, TEACHER_TS, TEMPERATURE_FILE, TRAINING_FILE, finished_steps, lettered_index,
    store_folder, students_folder)
from first_distill.store.manifest import write_json_atomically
from first_distill.variants import ONLINE_TEACHER, SAMPLED, STORE_EXTRACTION, STORE_KINDS, knowledge_needed, parse_variants
from first_eval.errors import InputError

__all__ = ["DistillConfig", "DistillResult", "run_distill"]


@dataclass(frozen=True)
class DistillResult:
    """A finished run: the report files, T, the students and each model's audit document (task -> metrics)."""

    output: Path
    report: Path
    teacher_temperature: Any  # first_distill.store.TeacherTemperature
    train: Any  # first_distill.train.TrainResult
    models: dict[str, dict[str, Any]]
    seconds: dict[str, float]


# --------------------------------------------------------------------------------------------- steps


def lettered_config(config: DistillConfig, output: Path) -> DistillConfig:
    """``format="letters"``: every task of the run lettered into ``output/letter_tasks``; the config the steps
    get names the lettered tasks and that folder (the lettered YAMLs point at their own data files).

    The folder is written once (by the main process); ``lettered.json`` in it maps each task to the one lm-eval
    runs, and a resumed run, or another process of a distributed one, reads it instead of lettering again."""
    from first_eval.lm_eval_bridge import prepare_lettered_tasks

    if config.format != "letters":
        return config
    index = lettered_index(output)
    if index.is_file():
        document = json.loads(index.read_text(encoding="utf-8"))
        folder, names = Path(document["folder"]), {t["source_task"]: t["name"] for t in document["tasks"]}
    else:
        tasks = list(dict.fromkeys(config.eval_tasks + config.train_tasks + config.calibration_tasks))
        lettered = prepare_lettered_tasks(tasks, index.parent, config.data_dir, config.include_path,
                                          num_fewshot=0)
        write_json_atomically(index, lettered.to_dict())
        folder, names = lettered.folder, {task.source_task: task.name for task in lettered.tasks}

    def rename(tasks: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(names[task] for task in tasks)

    return dataclasses.replace(config, include_path=folder, data_dir=None, eval_tasks=rename(config.eval_tasks),
                               train_tasks=rename(config.train_tasks), calibration_tasks=rename(config.calibration_tasks))


def prepare_output(config: DistillConfig, output: Path) -> None:
    """Refuse to overwrite another run, or to resume one with other settings; then write distill_config.json."""
    from first_distill.run_folder import check_run_folder

    current = config.to_dict()
    if (output / CONFIG_FILE).is_file() and not finished_steps(output):
        # A run refused or killed before its first finished step: the next command may start it over.
        shutil.rmtree(output)
    if check_run_folder(output, CONFIG_FILE, current, config.resume, RESUME_FREE_FIELDS, "distill run"):
        return
    output.mkdir(parents=True, exist_ok=True)
    write_json_atomically(output / CONFIG_FILE, current)


# --------------------------------------------------------------------------------------------- steps


def teacher_temperature(config: DistillConfig, output: Path):
    """Step 1: T (reused from teacher_temperature.json on --resume)."""
    from first_distill.model_folders import locate_model
    from first_distill.teacher.teacher_temperature import (
        TeacherTemperature, TemperatureFitConfig, resolve_teacher_temperature)

    path = output / TEMPERATURE_FILE
    if path.is_file():
        return TeacherTemperature.from_dict(json.loads(path.read_text(encoding="utf-8")))
    tasks = config.calibration_tasks or config.train_tasks
    teacher = locate_model(config.teacher, "--teacher")
    fit = None if not tasks else TemperatureFitConfig(
        model_args=teacher.lm_eval_model_args("float32"), task=",".join(tasks), data_dir=config.data_dir,
        include_path=config.include_path, limit=config.calibration_limit, batch_size=config.eval_batch_size,
        device=config.device, seed=config.settings.seed, level=config.temperature_level, teacher=teacher,
        apply_chat_template=config.apply_chat_template, system_instruction=config.system_instruction)
    temperature = resolve_teacher_temperature(config.teacher_temperature, config.calibrators_from,
                                              tasks[0] if len(tasks) == 1 else None, fit)
    write_json_atomically(path, temperature.to_dict())
    return temperature


def training_file(config: DistillConfig, output: Path) -> Path:
    """The training pairs as one JSONL (``--train`` itself, or the --train-task splits rendered by lm-eval)."""
    from first_distill.training_data import task_training_set

    if config.train is not None:
        return Path(config.train).expanduser().resolve()
    path = output / TRAINING_FILE
    if path.is_file():
        return path
    rows = []
    chat = chat_tokenizer(config)
    for task in config.train_tasks:
        training = task_training_set(task, config.data_dir, config.include_path, config.train_limit,
                                     chat_tokenizer=chat, system_instruction=config.system_instruction)
        rows.extend(json.dumps(example.to_dict(), ensure_ascii=False) for example in training.examples)
    partial = path.with_name(path.name + ".partial")
    partial.write_text("\n".join(rows) + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def extract_stores(config: DistillConfig, output: Path, variants: tuple, temperature: Any, train_path: Path) -> dict:
    """Step 2: {kind: store folder} for every store the variants need (complete ones reused)."""
    from first_distill.teacher.extract import ExtractConfig, extract_knowledge
    from first_distill.store.manifest import MANIFEST_NAME

    folders = {}
    for kind in knowledge_needed(variants):
        if kind not in STORE_KINDS:
            continue
        folder = store_folder(output, kind)
        if not (folder / MANIFEST_NAME).is_file():
            settings = dict(STORE_EXTRACTION[kind])
            # The resolved value itself, not its number: the store records where T came from (auto, fixed, ...).
            settings.setdefault("teacher_temperature", temperature)
            extract_knowledge(ExtractConfig(
                teacher=config.teacher, output=folder, train=train_path, train_limit=config.train_limit if config.train
                else None, top_k=config.top_k, samples_per_position=config.samples_per_position if kind == SAMPLED
                else None, batch_size=config.eval_batch_size, max_length=config.max_length, student=config.student,
                seed=config.settings.seed, device=config.device, prob_bits=config.prob_bits,
                progress=config.progress, **settings))
        folders[kind] = folder
    return folders


def train_students(config: DistillConfig, output: Path, variants: tuple, temperature: Any, train_path: Path,
                   stores: dict):
    """Step 3: one student per variant (first_distill.train)."""
    from first_distill.train import CONFIG_FILE as TRAIN_CONFIG, TrainConfig, train_student

    folder = students_folder(output)
    return train_student(TrainConfig(
        student=config.student, output=folder, variants=tuple(v.name for v in variants),
        stores=stores,
        teacher=config.teacher if any(v.knowledge == ONLINE_TEACHER for v in variants) else None,
        teacher_temperature=temperature.value if any(v.knowledge == ONLINE_TEACHER for v in variants) else None,
        train=train_path, train_limit=config.train_limit if config.train else None, max_length=config.max_length,
        settings=dataclasses.replace(config.settings, progress=config.progress),
        resume=(folder / TRAIN_CONFIG).is_file()))


# ----------------------------------------------------------------------------------------------- run


def run_distill(config: DistillConfig, reference_models: Mapping[str, Path] | None = None,
                reference_samples: Mapping[str, Sequence[Any]] | None = None, notes: Sequence[str] = (),
                title: str = "first distill: calibrated students against their baselines",
                extra: Mapping[str, Any] | None = None) -> DistillResult:
    """The whole pipeline (module docstring). ``reference_models``: extra model folders audited beside the
    students (e.g. the student before training); ``reference_samples``: extra pre-scored rows (e.g. a Bayes
    posterior); ``notes``: paragraphs at the top of the report; ``extra``: merged into metrics.json.
    ``InputError`` for any problem with the inputs, raised before anything is written."""
    variants = parse_variants(config.variants)
    check_inputs(config)
    check_tasks(config)
    check_models(config)
    output = Path(config.output).expanduser()
    if config.device is None:  # lm-eval's hf model would pick cuda even on a machine without one
        import torch

        config = dataclasses.replace(config, device="cuda" if torch.cuda.is_available() else "cpu")
    from first_distill.teacher.ranks import process_state

    # Under accelerate/torchrun every process runs this function: the main one fits T and audits; the others
    # wait for it; all extract (each its block of sequences) and train together (both are distributed-aware).
    state = process_state()
    if state.is_main_process:
        fresh = not (output / CONFIG_FILE).is_file()
        prepare_output(config, output)
        try:
            lettered = lettered_config(config, output)
        except InputError:
            if fresh:  # a run folder holding no finished step: the corrected command may start over
                shutil.rmtree(output, ignore_errors=True)
            raise
    state.wait_for_everyone()
    if not state.is_main_process:
        lettered = lettered_config(config, output)
    config = lettered
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    with state.main_process_first():
        temperature = teacher_temperature(config, output)
        seconds["teacher_temperature"] = time.perf_counter() - clock
        train_path = training_file(config, output)
    clock = time.perf_counter()
    stores = extract_stores(config, output, variants, temperature, train_path)
    seconds["extraction"] = time.perf_counter() - clock
    clock = time.perf_counter()
    trained = train_students(config, output, variants, temperature, train_path, stores)
    seconds["training"] = time.perf_counter() - clock
    report_path = Path(config.report_dir or output) / REPORT_FILE
    if not state.is_main_process:
        return DistillResult(output, report_path, temperature, trained, {}, seconds)
    clock = time.perf_counter()
    model_dirs = {TEACHER: Path(config.teacher), **{name: Path(path) for name, path in (reference_models or {}).items()},
                  **{student.variant: student.model_dir for student in trained.students}}
    audits = audit_models(config, output, model_dirs, temperature, reference_samples)
    seconds["audits"] = time.perf_counter() - clock
    order = [TEACHER, TEACHER_TS, *(reference_models or {}), *(reference_samples or {}), *(v.name for v in variants)]
    audits = {name: audits[name] for name in order if name in audits}
    report, models = write_distill_report(
        audits, Path(config.report_dir or output), output=output, config=config, temperature=temperature,
        trained=trained, stores=stores, seconds=seconds, notes=notes, title=title,
        command="first " + shlex.join(sys.argv[1:]), extra=extra)
    return DistillResult(output, report, temperature, trained, models, seconds)
