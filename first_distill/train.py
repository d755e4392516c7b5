"""``train_student``: one student per variant, all from the same initial student, data order and schedule.

    result = train_student(TrainConfig(student=Path("runs/base"), output=Path("runs/students"),
                                       variants=("first", "ce"), knowledge=Path("runs/knowledge"),
                                       train=Path("pairs.jsonl"), settings=TrainerSettings(epochs=2)))

Steps: check every input (variant names, stores against the student's tokenizer and vocabulary, the stores
against the training examples, position by position) before anything is written; then, per variant, load
the initial student, train it with ``DistillationTrainer`` (first_distill/trainer.py) and save it with
``save_pretrained`` plus its tokenizer, so lm-eval's ``hf`` model loads it (``pretrained=OUTPUT/<variant>/model``).
A GGUF student is dequantised to a plain fp32 model first (model_folders.load_trainable_model); its trained
copies are ordinary safetensors folders, and train_config.json records the source file (``student_gguf``).

Output folder::

    train_config.json            the settings (a --resume with other settings is refused); student_gguf: the
                                 source file (path, bytes, sha256) of a GGUF student
    train_result.json            TrainResult.to_dict()
    <variant>/model/             the trained student (appears only once complete)
    <variant>/checkpoints/       checkpoint-N folders (resume points)
    <variant>/training_log.json  per-step training loss (training curves)
    <variant>/result.json        StudentResult.to_dict()

Examples are tokenized exactly as extraction tokenized them (lm-eval's pair encoding, left-truncated to the
store's recorded ``max_length``), so stored row j of example i is the teacher's view of its j-th completion
token. An example without a completion token is refused (it has no position to learn from). Run under
``accelerate launch`` or ``torchrun`` for several GPUs: every process calls ``train_student``; only the main one
writes files.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from first_distill.collator import DistillationCollator, ExampleDataset
from first_distill.store.manifest import write_json_atomically
from first_distill.model_folders import gguf_source, load_text_config, load_trainable_model
from first_distill.trainer import STAGING_DIR, TrainerSettings, make_trainer, save_final_model
from first_distill.train_inputs import (
    check_alignment, check_teacher, full_kd_temperature, knowledge_label, load_training, open_stores, training_max_length)
from first_distill.variants import ONLINE_TEACHER, STORE_KINDS, Variant, knowledge_needed, parse_variants
from first_eval.errors import InputError
from first_eval.setting_checks import number_problem, require, whole_number_problem

CONFIG_FILE = "train_config.json"
RESULT_FILE = "train_result.json"
SCHEMA = "first.train/1"
# Settings that may change between a run and its --resume.
RESUME_FREE_FIELDS = ("resume", "progress")


@dataclass(frozen=True)
class TrainConfig:
    """One training run: every variant trained from the same student on the same pairs (step 3 of ``first distill``).

    Attributes:
        student: the initial student's model folder (or a ``.gguf`` file inside one); every variant starts from it.
        output: the run folder (module docstring).
        variants: names from first_distill.variants.VARIANTS (``first``, ``topk-notemp``, ``topk-tail``, ``rs-kd``,
            ``full-kd``, ``ce``, ``label-smoothing``).
        stores: {knowledge kind: store folder} (first_distill.variants): ``tempered-topk`` for ``first`` and
            ``topk-tail`` (its T is ``full-kd``'s default), ``untempered-topk`` (extracted at T = 1) for
            ``topk-notemp``, ``sampled`` for ``rs-kd``.
        teacher: the teacher model folder, run online (``full-kd``).
        teacher_temperature: T for ``full-kd``; default: the ``knowledge`` (else ``knowledge_sampled``) store's T.
        train / train_limit: the training pairs (JSONL), exactly as the stores were extracted from (checked).
        max_length: tokens kept per example; default: what the stores were extracted with, else the student's context.
        settings: optimisation settings (first_distill.trainer.TrainerSettings).
        resume: continue an interrupted run in ``output`` from its last checkpoints (same settings required).
    """

    student: Path
    output: Path
    variants: tuple[str, ...] = ("first",)
    stores: Mapping[str, Path] = field(default_factory=dict)
    teacher: Path | None = None
    teacher_temperature: float | None = None
    train: Path | None = None
    train_limit: int | None = None
    max_length: int | None = None
    settings: TrainerSettings = field(default_factory=TrainerSettings)
    resume: bool = False

    def __post_init__(self) -> None:
        require(*self.problems())

    def problems(self) -> list[str]:
        """Every invalid setting, one message each: the variants, the training pairs, the knowledge each variant
        needs (a store per kind, or the teacher for ``full-kd``)."""
        from first_distill.training_data import check_max_length

        try:
            variants = parse_variants(self.variants)
        except InputError as error:
            return [str(error)]
        found = [None if self.train is not None else "give the training pairs (train: a JSONL file)",
                 whole_number_problem(self.train_limit, "--limit", optional=True),
                 number_problem(self.teacher_temperature, "--teacher-temperature", 0, low_open=True, optional=True)]
        try:
            check_max_length(self.max_length)
        except InputError as error:
            found.append(str(error))
        unknown = sorted(set(self.stores) - set(STORE_KINDS))
        if unknown:
            found.append(f"stores: unknown knowledge kind(s) {', '.join(map(repr, unknown))}; known: "
                         f"{', '.join(STORE_KINDS)}")
        for kind in knowledge_needed(variants):
            if (self.teacher if kind == ONLINE_TEACHER else self.stores.get(kind)) is None:
                users = ", ".join(v.name for v in variants if v.knowledge == kind)
                found.append(f"variant {users} needs {knowledge_label(kind)}")
        return [problem for problem in found if problem]

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-able settings (paths resolved; ``settings`` fields at the top level). A GGUF student adds
        ``student_gguf`` (model_folders.gguf_source): its trained copies no longer name the file, and a
        ``--resume`` from a changed file is refused."""
        from first_distill.run_folder import config_json

        document = config_json(self, SCHEMA, flatten="settings")
        source = gguf_source(self.student)
        if source is not None:
            document["student_gguf"] = source
        return document


@dataclass(frozen=True)
class StudentResult:
    """One trained student. ``tokens``: non-padding input tokens trained on (main process), over the whole run,
    the steps before a resumed checkpoint included; ``tokens_this_run``: those of this process's run alone (what
    ``seconds`` was spent on; None in results written before it was recorded);
    ``resumed_from_step``: the checkpoint step this run continued from (0: from the start);
    ``already_complete``: found finished in the output folder (a --resume), not trained again."""

    variant: str
    model_dir: Path
    log_path: Path
    steps: int
    final_loss: float | None
    mean_loss: float | None
    seconds: float
    tokens: int
    resumed_from_step: int = 0
    already_complete: bool = False
    tokens_this_run: int | None = None

    @property
    def tokens_per_second(self) -> float | None:
        tokens = self.tokens if self.tokens_this_run is None else self.tokens_this_run
        return tokens / self.seconds if self.seconds > 0 and tokens else None

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "model_dir": str(self.model_dir), "log_path": str(self.log_path),
                "steps": self.steps, "final_loss": self.final_loss, "mean_loss": self.mean_loss,
                "seconds": self.seconds, "tokens": self.tokens, "tokens_this_run": self.tokens_this_run,
                "tokens_per_second": self.tokens_per_second, "resumed_from_step": self.resumed_from_step,
                "already_complete": self.already_complete}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StudentResult":
        return cls(variant=data["variant"], model_dir=Path(data["model_dir"]), log_path=Path(data["log_path"]),
                   steps=int(data["steps"]), final_loss=data.get("final_loss"), mean_loss=data.get("mean_loss"),
                   seconds=float(data["seconds"]), tokens=int(data["tokens"]),
                   resumed_from_step=int(data.get("resumed_from_step", 0)),
                   tokens_this_run=None if data.get("tokens_this_run") is None else int(data["tokens_this_run"]))


@dataclass(frozen=True)
class TrainResult:
    """The run: its folder, one ``StudentResult`` per variant (config order), the ``full-kd`` temperature used."""

    output: Path
    students: tuple[StudentResult, ...]
    teacher_temperature: float | None = None

    def student(self, variant: str) -> StudentResult:
        for result in self.students:
            if result.variant == variant:
                return result
        raise KeyError(f"no student for variant {variant!r} (trained: {', '.join(s.variant for s in self.students)})")

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.output), "teacher_temperature": self.teacher_temperature,
                "students": [student.to_dict() for student in self.students]}


# ---------------------------------------------------------------------------------------------- run


def _prepare_output(config: TrainConfig, output: Path, state: Any) -> None:
    """Refuse to overwrite a run, or to resume one whose settings differ; then write train_config.json."""
    from first_distill.run_folder import check_run_folder

    config_path = output / CONFIG_FILE
    current = config.to_dict()
    check_run_folder(output, CONFIG_FILE, current, config.resume, RESUME_FREE_FIELDS, "training run")
    state.wait_for_everyone()  # every process has checked before the main one writes
    if state.is_main_process and not config_path.is_file():
        output.mkdir(parents=True, exist_ok=True)
        write_json_atomically(config_path, current)
    state.wait_for_everyone()


def train_student(config: TrainConfig) -> TrainResult:
    """Train one student per variant (module docstring); ``InputError`` for any problem with the inputs."""
    from first_distill.store import tokenizer_fingerprint
    from first_distill.model_folders import load_tokenizer, locate_model
    from first_distill.training_data import check_completion_tokens, tokenize_examples

    variants = parse_variants(config.variants)
    student = locate_model(config.student, "--student")
    tokenizer = load_tokenizer(student, "--student")
    vocab_size = int(load_text_config(student, "--student").vocab_size)
    tokenizer_sha256 = tokenizer_fingerprint(tokenizer)
    stores = open_stores(config, variants, vocab_size, tokenizer_sha256)
    online = any(v.knowledge == ONLINE_TEACHER for v in variants)
    teacher = check_teacher(config, vocab_size, tokenizer_sha256) if online else None
    temperature = full_kd_temperature(config, stores) if online else None
    max_length = training_max_length(config, stores, student)
    training = load_training(config)
    examples = tokenize_examples(training.examples, tokenizer, max_length)
    check_completion_tokens(training, examples)
    check_alignment(stores, examples, training, max_length)
    dataset = ExampleDataset(examples)

    output = Path(config.output).expanduser()
    first_args = config.settings.training_arguments(output / variants[0].name / "checkpoints")
    _ = first_args.device  # sets up the (distributed) process state
    from accelerate import PartialState

    state = PartialState()
    _prepare_output(config, output, state)
    pad_id = next((t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id) if t is not None), 0)
    results = []
    for variant in variants:
        results.append(_train_variant(variant, config, output, student, tokenizer, dataset, stores, pad_id, state,
                                      teacher=teacher, teacher_temperature=temperature))
    result = TrainResult(output, tuple(results), temperature)
    if state.is_main_process:
        write_json_atomically(output / RESULT_FILE, result.to_dict())
    return result


def _train_variant(variant: Variant, config: TrainConfig, output: Path, student: Any, tokenizer: Any,
                   dataset: ExampleDataset, stores: dict, pad_id: int, state: Any, teacher: Any = None,
                   teacher_temperature: float | None = None) -> StudentResult:
    import torch
    import transformers
    from transformers.trainer_utils import get_last_checkpoint

    folder = output / variant.name
    model_dir, result_path, log_path = folder / "model", folder / "result.json", folder / "training_log.json"
    checkpoints = folder / "checkpoints"
    if model_dir.is_dir() and result_path.is_file():  # finished by the run being resumed
        done = StudentResult.from_dict(json.loads(result_path.read_text(encoding="utf-8")))
        return dataclasses.replace(done, already_complete=True)
    if state.is_main_process:
        checkpoints.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(checkpoints / STAGING_DIR, ignore_errors=True)  # a checkpoint a kill interrupted
    state.wait_for_everyone()
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None

    args = config.settings.training_arguments(checkpoints)
    transformers.set_seed(config.settings.seed)
    model = load_trainable_model(student, "--student")  # a GGUF file: dequantised, no quantiser markers
    teacher_model = None
    if variant.knowledge == ONLINE_TEACHER:
        from first_distill.model_folders import load_teacher

        teacher_model = load_teacher(teacher, "cpu", torch.bfloat16 if args.bf16 else torch.float32)
    collator = DistillationCollator(pad_id, stores.get(variant.knowledge), config.settings.pad_to_multiple_of)
    trainer = make_trainer(model=model, args=args, dataset=dataset, collator=collator, tokenizer=tokenizer,
                           variant=variant, log_path=log_path, teacher=teacher_model,
                           teacher_temperature=teacher_temperature or 1.0)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - started
    losses = [float(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]  # restored on resume
    tokens = int(trainer.tokens_seen)  # restored on resume too (trainer.py)
    result = StudentResult(
        variant=variant.name, model_dir=model_dir, log_path=log_path, steps=int(trainer.state.global_step),
        final_loss=losses[-1] if losses else None, mean_loss=sum(losses) / len(losses) if losses else None,
        seconds=seconds, tokens=tokens, tokens_this_run=tokens - trainer.tokens_at_start,
        resumed_from_step=int(Path(last).name.rsplit("-", 1)[1]) if last else 0)
    if state.is_main_process:
        write_json_atomically(result_path, result.to_dict())
    save_final_model(trainer, model_dir)
    del trainer, model, teacher_model
    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()  # the next variant starts from an empty GPU
    return result
