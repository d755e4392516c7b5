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

Output folder::

    distill_config.json        the settings (a --resume with other settings is refused)
    teacher_temperature.json   T and the evidence for it (ECE before/after on the validation split)
    training.jsonl             the training pairs (when they come from --train-task)
    knowledge/<kind>/          knowledge stores (first_distill.store)
    students/<variant>/model   trained students (first_distill.train)
    audits/<model>/            one `first report` folder per audited model, lm-eval's files under lm-eval/
    report.html, metrics.json  the before/after comparison

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from first_distill.store.manifest import write_json_atomically
from first_distill.trainer import TrainerSettings
from first_distill.variants import (
    ONLINE_TEACHER, SAMPLED, STORE_EXTRACTION, STORE_KINDS, TEMPERED_TOPK, UNTEMPERED_TOPK, knowledge_needed,
    parse_variants)
from first_eval.errors import InputError

SCHEMA = "first.distill/1"
CONFIG_FILE = "distill_config.json"
TEMPERATURE_FILE = "teacher_temperature.json"
TRAINING_FILE = "training.jsonl"
LETTERED_FOLDER = "letter_tasks"  # --format letters: the lettered task YAMLs and their documents
AUDIT_DONE = "audit_done.json"  # beside lm-eval's files of a finished audit
TEACHER, TEACHER_TS = "teacher", "teacher+ts"
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
            a lettered question, ``first_eval.lm_eval_bridge.lettered``; written into ``output/letter_tasks``).
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings (paths resolved), as distill_config.json holds them."""
        from first_distill.run_folder import config_json

        return config_json(self, SCHEMA)


@dataclass(frozen=True)
class DistillResult:
    """A finished run: the report files, T, the students and each model's audit document (task -> metrics)."""

    output: Path
    report: Path
    teacher_temperature: Any  # first_distill.store.TeacherTemperature
    train: Any  # first_distill.train.TrainResult
    models: dict[str, dict[str, Any]]
    seconds: dict[str, float]


# ------------------------------------------------------------------------------------------- checks


def check_config(config: DistillConfig) -> tuple:
    """Every input problem found before anything runs, as one InputError line; returns the parsed variants."""
    from first_distill.teacher.teacher_temperature import parse_temperature_option
    from first_distill.training_data import check_max_length
    from first_eval.input_checks import check_device, check_output_folder
    from first_eval.lm_eval_bridge.lettered import check_format

    variants = parse_variants(config.variants)
    problems = list(config.settings.problems())
    if bool(config.train_tasks) == (config.train is not None):
        problems.append("give the training pairs with exactly one of --train-task NAME[,NAME] or --train FILE.jsonl")
    if not config.eval_tasks:
        problems.append("--eval-tasks is empty; name the multiple-choice tasks to audit every model on")
    for name in ("top_k", "samples_per_position", "eval_batch_size", "calibration_limit", "train_limit", "eval_limit"):
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            problems.append(f"--{name.replace('_', '-')} {value!r}: must be a whole number >= 1")
    if config.n_bootstrap is not None and (not isinstance(config.n_bootstrap, int) or config.n_bootstrap < 0):
        problems.append(f"--bootstrap {config.n_bootstrap!r}: must be a whole number >= 0")
    if config.prob_bits not in (8, 16):
        problems.append(f"--prob-bits {config.prob_bits!r}: must be 8 or 16")
    if config.temperature_level not in ("choice", "token"):
        problems.append(f"--temperature-level {config.temperature_level!r}: must be choice or token")
    if config.system_instruction is not None and not config.system_instruction.strip():
        problems.append("--system-instruction is empty; give the text of the system message or leave the flag out")
    try:
        check_format(config.format)
        check_max_length(config.max_length)
        parse_temperature_option(config.teacher_temperature)
    except InputError as error:
        problems.append(str(error))
    if config.train is not None and not Path(config.train).expanduser().is_file():
        problems.append(f"--train {config.train}: no such file")
    elif config.train is not None:
        from first_distill.training_data import read_training_jsonl

        try:
            read_training_jsonl(config.train)  # refused before anything runs, not after T was fitted
        except InputError as error:
            problems.append(str(error))
    if config.calibrators_from is not None:
        from first_distill.teacher.teacher_temperature import temperature_from_calibrators

        tasks = config.calibration_tasks or config.train_tasks
        try:
            temperature_from_calibrators(config.calibrators_from, tasks[0] if len(tasks) == 1 else None)
        except InputError as error:
            problems.append(str(error))
    for check in (lambda: check_output_folder(config.output, "--output"),
                  lambda: config.report_dir is None or check_output_folder(config.report_dir, "--report-dir"),
                  lambda: check_device(config.device)):
        try:
            check()
        except InputError as error:
            problems.append(str(error))
    for flag, folder in (("--data-dir", config.data_dir), ("--include-path", config.include_path)):
        if folder is not None and not Path(folder).expanduser().is_dir():
            problems.append(f"{flag} {folder}: no such folder")
    if problems:
        raise InputError("; ".join(problems))
    return variants


def check_tasks(config: DistillConfig) -> None:
    """Every eval/train/calibration task exists and is multiple choice (did-you-mean for unknown names)."""
    from first_eval.lm_eval_bridge.task_lookup import find_task_definitions, require_multiple_choice

    include = [Path(config.include_path).expanduser()] if config.include_path is not None else []
    names = list(dict.fromkeys(config.eval_tasks + config.train_tasks + config.calibration_tasks))
    require_multiple_choice(find_task_definitions(names, include))


def check_models(config: DistillConfig) -> None:
    """Teacher and student load as model folders and share one tokenizer (same vocabulary, same ids)."""
    from first_distill.model_folders import check_same_tokenizer, locate_model, tokenizer_identity

    from first_eval.input_checks import check_model_folder

    locations = {flag: locate_model(path, flag) for flag, path in (("--teacher", config.teacher),
                                                                      ("--student", config.student))}
    for flag, location in locations.items():
        check_model_folder(location.folder, location.gguf_file, flag=flag)
    teacher = tokenizer_identity(locations["--teacher"], "--teacher")
    check_same_tokenizer(teacher, tokenizer_identity(locations["--student"], "--student"),
                         f"--teacher {config.teacher}, --student {config.student}")
    if config.top_k > teacher[0]:
        raise InputError(f"--top-k {config.top_k}: above the teacher's vocabulary of {teacher[0]} tokens")
    if config.apply_chat_template:
        chat_tokenizer(config)


def chat_tokenizer(config: DistillConfig) -> Any:
    """With ``apply_chat_template``: the teacher's tokenizer, whose chat template renders every prompt; else None."""
    from first_distill.model_folders import load_tokenizer, locate_model

    if not config.apply_chat_template:
        return None
    tokenizer = load_tokenizer(locate_model(config.teacher, "--teacher"), "--teacher")
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(f"--apply-chat-template: the teacher {config.teacher} has no chat template (its tokenizer "
                         "defines none); leave the flag out for a base model")
    return tokenizer


def lettered_config(config: DistillConfig, output: Path) -> DistillConfig:
    """``format="letters"``: every task of the run lettered into ``output/letter_tasks``; the config the steps
    get names the lettered tasks and that folder (the lettered YAMLs point at their own data files).

    The folder is written once (by the main process); ``lettered.json`` in it maps each task to the one lm-eval
    runs, and a resumed run, or another process of a distributed one, reads it instead of lettering again."""
    from first_eval.lm_eval_bridge.lettered import prepare_lettered_tasks

    if config.format != "letters":
        return config
    index = output / LETTERED_FOLDER / "lettered.json"
    if index.is_file():
        document = json.loads(index.read_text(encoding="utf-8"))
        folder, names = Path(document["folder"]), {t["source_task"]: t["name"] for t in document["tasks"]}
    else:
        tasks = list(dict.fromkeys(config.eval_tasks + config.train_tasks + config.calibration_tasks))
        lettered = prepare_lettered_tasks(tasks, output / LETTERED_FOLDER, config.data_dir, config.include_path,
                                          num_fewshot=0)
        write_json_atomically(index, lettered.to_dict())
        folder, names = lettered.folder, {task.source_task: task.name for task in lettered.tasks}

    def rename(tasks: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(names[task] for task in tasks)

    return dataclasses.replace(config, include_path=folder, data_dir=None, eval_tasks=rename(config.eval_tasks),
                               train_tasks=rename(config.train_tasks), calibration_tasks=rename(config.calibration_tasks))


def finished_steps(output: Path) -> list[Path]:
    """The files that show a finished step of the run in ``output`` (T, a store, a student, an audit)."""
    from first_distill.store.manifest import MANIFEST_NAME

    return [*[p for p in (output / TEMPERATURE_FILE,) if p.is_file()],
            *output.glob(f"knowledge/*/{MANIFEST_NAME}"), *output.glob("students/*/model/config.json"),
            *output.glob(f"audits/*/lm-eval/{AUDIT_DONE}")]


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
        folder = output / "knowledge" / kind
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

    folder = output / "students"
    return train_student(TrainConfig(
        student=config.student, output=folder, variants=tuple(v.name for v in variants),
        knowledge=stores.get(TEMPERED_TOPK), knowledge_untempered=stores.get(UNTEMPERED_TOPK),
        knowledge_sampled=stores.get(SAMPLED),
        teacher=config.teacher if any(v.knowledge == ONLINE_TEACHER for v in variants) else None,
        teacher_temperature=temperature.value if any(v.knowledge == ONLINE_TEACHER for v in variants) else None,
        train=train_path, train_limit=config.train_limit if config.train else None, max_length=config.max_length,
        settings=dataclasses.replace(config.settings, progress=config.progress),
        resume=(folder / TRAIN_CONFIG).is_file()))


def model_samples(config: DistillConfig, output: Path, name: str, model_dir: Path) -> list:
    """lm-eval's samples of one model on the eval tasks. A finished audit of this run (``AUDIT_DONE`` beside
    lm-eval's files) is read back from its samples files instead of run again, so a --resume redoes no audit
    and the folder keeps one set of files that ``first report --samples`` can re-audit."""
    from first_distill.model_folders import locate_model
    from first_eval.lm_eval_bridge.live import LiveRunConfig, run_lm_eval
    from first_eval.lm_eval_bridge.samples import read_samples_path

    folder = output / "audits" / name / "lm-eval"
    done = folder / AUDIT_DONE
    if done.is_file():
        paths = json.loads(done.read_text(encoding="utf-8"))["samples_paths"]
        return [samples for path in paths.values() for samples in read_samples_path(Path(path))]
    shutil.rmtree(folder, ignore_errors=True)  # an audit a kill interrupted
    location = locate_model(model_dir, f"model {name}")
    run = run_lm_eval(LiveRunConfig(
        tasks=config.eval_tasks, output_dir=folder, model="hf", model_args=location.lm_eval_model_args("float32"),
        include_path=config.include_path, data_dir=config.data_dir, num_fewshot=0, limit=config.eval_limit,
        batch_size=config.eval_batch_size, device=config.device, seed=config.settings.seed,
        apply_chat_template=config.apply_chat_template, system_instruction=config.system_instruction))
    write_json_atomically(done, {"samples_paths": {task: str(path) for task, path in run.samples_paths.items()}})
    return list(run.task_samples)


def audit_models(config: DistillConfig, output: Path, model_dirs: Mapping[str, Path], temperature: Any,
                 reference_samples: Mapping[str, Sequence[Any]] | None = None) -> dict[str, list]:
    """Step 4: {model name: [TaskAudit per eval task]}; lm-eval runs once per model, ``teacher+ts`` reuses the
    teacher's samples with T applied to the choice scores."""
    from first_eval.audit import AuditConfig, audit_task

    audit_config = AuditConfig(n_bootstrap=config.n_bootstrap, seed=config.settings.seed)
    samples_by_model: dict[str, list] = {}
    for name, model_dir in model_dirs.items():
        samples_by_model[name] = model_samples(config, output, name, model_dir)
        if name == TEACHER and temperature.enabled:
            samples_by_model[TEACHER_TS] = [samples.tempered(temperature.value) for samples in samples_by_model[name]]
    for name, samples in (reference_samples or {}).items():
        samples_by_model[name] = list(samples)
    return {name: [audit_task(samples, audit_config) for samples in task_samples]
            for name, task_samples in samples_by_model.items()}


# ----------------------------------------------------------------------------------------------- run


def run_distill(config: DistillConfig, reference_models: Mapping[str, Path] | None = None,
                reference_samples: Mapping[str, Sequence[Any]] | None = None, notes: Sequence[str] = (),
                title: str = "first distill: calibrated students against their baselines",
                extra: Mapping[str, Any] | None = None) -> DistillResult:
    """The whole pipeline (module docstring). ``reference_models``: extra model folders audited beside the
    students (e.g. the student before training); ``reference_samples``: extra pre-scored rows (e.g. a Bayes
    posterior); ``notes``: paragraphs at the top of the report; ``extra``: merged into metrics.json.
    ``InputError`` for any problem with the inputs, raised before anything is written."""
    variants = check_config(config)
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
    report_path = Path(config.report_dir or output) / "report.html"
    if not state.is_main_process:
        return DistillResult(output, report_path, temperature, trained, {}, seconds)
    clock = time.perf_counter()
    model_dirs = {TEACHER: Path(config.teacher), **{name: Path(path) for name, path in (reference_models or {}).items()},
                  **{student.variant: student.model_dir for student in trained.students}}
    audits = audit_models(config, output, model_dirs, temperature, reference_samples)
    seconds["audits"] = time.perf_counter() - clock
    order = [TEACHER, TEACHER_TS, *(reference_models or {}), *(reference_samples or {}), *(v.name for v in variants)]
    audits = {name: audits[name] for name in order if name in audits}
    from first_distill.distill_report import write_distill_report

    report, models = write_distill_report(
        audits, Path(config.report_dir or output), output=output, config=config, temperature=temperature,
        trained=trained, stores=stores, seconds=seconds, notes=notes, title=title,
        command="first " + shlex.join(sys.argv[1:]), extra=extra)
    return DistillResult(output, report, temperature, trained, models, seconds)
