"""Extraction: run the teacher over the training completions and store its tempered top-k (or sampled) knowledge.

FIRST's "concentrated knowledge" (Shum et al., EMNLP 2024): for every completion position p of every training
example, the token at p is predicted by the logits at p - 1; the stored distribution is the tempered teacher

    q_T(v | x_<p) = softmax(z_{p-1} / T)_v,      z = teacher logits (fp32 on CPU, bf16 on a GPU, softmax in fp32)

reduced to k entries. One module per step: T, resolved once (teacher_temperature.py) and passed down unchanged;
aligned windows of length-sorted batches (windows.py: a resumed run recomputes its window with the same batches
and writes byte-identical shards); the teacher's completion logits (forward.py); top-k or sampled tokens per
position (selection.py); the store, written in the original order (``first_distill.store``).

Resume granularity: a shard is closed at ``shard_positions`` positions, or, the first time one has been open
``shard_seconds`` (checked after each window), there; its size then becomes the limit for the rest of the run
and is recorded in the shards, so a kill loses about ``shard_seconds`` of work (plus the window a resumed run
recomputes) and the resumed store stays byte-identical to the uninterrupted one (writer.py explains why).

Every training pair must have a completion token; one without is refused (file and line) before T is fitted,
the teacher is loaded or a file is written.

Data-parallel (``accelerate launch`` / ``torchrun``; accelerate's ``PartialState`` gives the rank, the number
of processes W and the barriers): the windows are cut into W blocks of consecutive sequences of about equal
teacher cost (``rank_ranges``; ranks.py records the plan), so each rank forms exactly the batches a one-process
run forms and the store holds the same numbers. Rank 0 resolves T (an ``auto`` fit runs once) and records it;
the others load the teacher meanwhile, wait, and read it. Each rank writes its own shard series (with its own
clock for ``shard_seconds``) and its part; rank 0 writes the manifest last, after every part, and all ranks
return once it exists. A kill of any rank (the launcher then stops the rest) is resumed by the same command with
the same number of processes, each rank from its own last complete shard.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from first_distill.model_folders import (
    ModelLocation, check_same_tokenizer, load_teacher, load_text_config, load_tokenizer, locate_model, tokenizer_identity)
from first_distill.store.fingerprint import canonical_json_sha256, file_sha256, tokenizer_fingerprint
from first_distill.store.manifest import MANIFEST_NAME, Manifest, write_json_atomically
from first_distill.store.shard import shard_prefix
from first_distill.store.writer import DEFAULT_SHARD_POSITIONS, KnowledgeStoreWriter
from first_distill.teacher import windows
from first_distill.teacher.forward import collate_teacher_batch, completion_logits
from first_eval.progress import progress_bar
from first_distill.teacher.ranks import finish_store, process_device, process_state, settle_plan, warn_if_idle, write_plan
from first_distill.teacher.selection import SELECTIONS, select_knowledge
from first_distill.teacher.teacher_temperature import (
    TEMPERATURE_LEVELS, TeacherTemperature, TemperatureFitConfig, parse_temperature_option,
    resolve_teacher_temperature)
from first_distill.teacher.windows import plan_windows, rank_ranges
from first_distill.training_data import (
    TokenizedExample, check_completion_tokens, check_max_length, read_training_jsonl, task_training_set,
    tokenize_examples)
from first_eval.errors import InputError
from first_eval.setting_checks import choice_problem, number_problem, require, whole_number_problem

TEMPERATURE_FILE = "teacher_temperature.json"  # beside the shards: lets a resumed `auto` run skip the lm-eval audit
MAX_SAMPLES_PER_POSITION = 65535  # the store's 16-bit sample counts


@dataclass(frozen=True)
class ExtractConfig:
    """One extraction (the ``first distill extract`` flags).

    Attributes:
        teacher: the teacher's model folder, or a ``.gguf`` file inside one.
        output: the knowledge store folder (resumed when it holds an unfinished extraction).
        train / train_task: the training pairs: a JSONL file, or an lm-eval task's training split
            (with ``data_dir`` / ``include_path`` as ``first report``); exactly one. ``train_limit``: first N only.
        top_k: tokens stored per position (``topk``). selection: ``topk`` or ``sample``.
        samples_per_position: S draws per position (``sample``; stored slots = min(S, vocabulary)).
        teacher_temperature: ``"auto"``, ``"none"``, a number, or None (auto, unless ``calibrators_from``); or a
            ``TeacherTemperature`` resolved upstream, used as it is (its source and evidence go into the manifest).
        calibrators_from: a ``first report`` calibrators.json to take T from.
        calibration_task: the task ``auto`` audits the teacher on (default ``train_task``); ``calibration_limit``
            caps its validation questions.
        batch_size: sequences per teacher forward pass. max_length: tokens kept per example (left-truncated;
            default: the teacher's ``max_position_embeddings``).
        student: a student folder whose tokenizer and vocabulary must match the teacher's.
        seed: sampling seed (``sample``) and lm-eval's seed (``auto``).
        device: ``cpu``, ``cuda``, ``cuda:1``; None: a GPU when there is one.
        prob_bits: 8 or 16 bits per stored top-k probability. shard_positions: positions per shard file.
        shard_seconds: close the first shard open this long and keep its size (module docstring): a kill loses
            about this much work. None: shards close by size alone.
        temperature_level: what ``auto`` fits T on: ``choice`` (lm-eval's answer scores) or ``token`` (the
            next-token distributions at the gold answer tokens; right for answers of several tokens).
        progress: show a progress bar on stderr.
    """

    teacher: Path
    output: Path
    train: Path | None = None
    train_task: str | None = None
    data_dir: Path | None = None
    include_path: Path | None = None
    train_limit: int | None = None
    top_k: int = 5
    selection: str = "topk"
    samples_per_position: int | None = None
    teacher_temperature: "str | float | TeacherTemperature | None" = None
    calibrators_from: Path | None = None
    calibration_task: str | None = None
    calibration_limit: int | None = None
    batch_size: int = 8
    max_length: int | None = None
    student: Path | None = None
    seed: int = 0
    device: str | None = None
    prob_bits: int = 8
    temperature_level: str = "choice"
    shard_positions: int = DEFAULT_SHARD_POSITIONS
    shard_seconds: float | None = 60.0
    progress: bool = True

    def __post_init__(self) -> None:
        """Every problem with the settings at once, as one ``InputError`` line (``require``)."""
        samples = self.samples_per_position
        samples_problem = None
        if self.selection == "sample":
            samples_problem = (whole_number_problem(samples, "--samples-per-position") if samples is not None
                               else "--selection sample needs --samples-per-position N (draws per position)")
            if samples_problem is None and samples > MAX_SAMPLES_PER_POSITION:
                samples_problem = f"--samples-per-position {samples}: must be <= {MAX_SAMPLES_PER_POSITION}"
        elif samples is not None:
            samples_problem = "--samples-per-position is only for --selection sample"
        require(
            None if (self.train is None) != (self.train_task is None) else
            "give the training pairs with exactly one of --train FILE.jsonl or --train-task NAME",
            # the helper decides; the wording stays the flag's own (the CLI tests quote it)
            choice_problem(self.selection, "--selection", SELECTIONS)
            and f"--selection {self.selection!r}: must be one of {', '.join(SELECTIONS)}",
            whole_number_problem(self.top_k, "--top-k"),
            whole_number_problem(self.batch_size, "--batch-size"),
            whole_number_problem(self.train_limit, "--limit", optional=True),
            whole_number_problem(self.calibration_limit, "--calibration-limit", optional=True),
            whole_number_problem(self.shard_positions, "shard_positions"),
            number_problem(self.shard_seconds, "shard_seconds", 0, low_open=True, optional=True)
            and f"shard_seconds {self.shard_seconds!r}: must be a number > 0 (or None: shards by size only)",
            _raised(check_max_length, self.max_length),
            samples_problem,
            choice_problem(self.prob_bits, "--prob-bits", (8, 16)),
            choice_problem(self.temperature_level, "--temperature-level", TEMPERATURE_LEVELS),
            _raised(parse_temperature_option, self.teacher_temperature))


def _raised(check: Any, value: Any) -> str | None:
    """The ``InputError`` line a raising check gives (or None), so it joins the other problems."""
    try:
        check(value)
    except InputError as error:
        return str(error)
    return None


@dataclass(frozen=True)
class ExtractResult:
    """A finished store and what this run did, over all its processes: ``resumed_from`` sequences were already on
    disk (> 0: it continued a killed run), ``positions_this_run`` were extracted in ``seconds`` (the slowest
    rank's). ``rank`` of ``world_size``: the process this result was returned in."""

    folder: Path
    manifest: Manifest
    teacher_temperature: TeacherTemperature
    resumed_from: int
    positions_this_run: int
    seconds: float
    world_size: int = 1
    rank: int = 0

    @property
    def positions_per_second(self) -> float | None:
        return self.positions_this_run / self.seconds if self.seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "n_sequences": self.manifest.n_sequences,
                "n_positions": self.manifest.n_positions, "resumed_from": self.resumed_from,
                "positions_this_run": self.positions_this_run, "seconds": self.seconds,
                "positions_per_second": self.positions_per_second,
                "teacher_temperature": self.teacher_temperature.to_dict(), "world_size": self.world_size,
                "stats": self.manifest.stats}


# ------------------------------------------------------------------------------------------- models


def teacher_config_sha256(location: ModelLocation, model_config: Any) -> str:
    """sha256 of the teacher's config.json; for a GGUF teacher, of its parsed config (canonical JSON)."""
    if location.gguf_file is None:
        return file_sha256(location.folder / "config.json")
    settings = {key: value for key, value in model_config.to_dict().items()
                if key not in ("transformers_version", "dtype", "torch_dtype", "_name_or_path")}
    return canonical_json_sha256(json.loads(json.dumps(settings, default=str)))


# ---------------------------------------------------------------------------------------------- the run


def extract_knowledge(config: ExtractConfig) -> ExtractResult:
    """Check everything, fix T, run the teacher and write the store (module docstring); ``InputError`` on bad input.

    Nothing is written before every input has been checked; a rerun after a kill continues where it stopped.
    Under ``accelerate launch`` every process calls it with the same config and gets the same result (but ``rank``).
    """
    import torch

    output = Path(config.output).expanduser()
    if output.exists() and not output.is_dir():
        raise InputError(f"--output {output}: is a file, not a folder")
    if (output / MANIFEST_NAME).is_file():
        raise InputError(f"--output {output} already holds a complete knowledge store; choose another folder or delete it")
    state = process_state()
    rank, main = state.process_index, state.is_main_process
    teacher = locate_model(config.teacher, "--teacher")
    tokenizer = load_tokenizer(teacher, "--teacher")
    teacher_config = load_text_config(teacher, "--teacher")
    vocab_size = int(teacher_config.vocab_size)  # the logit width: what stored ids index
    tokenizer_sha256 = tokenizer_fingerprint(tokenizer)
    if config.student is not None:
        check_same_tokenizer((vocab_size, tokenizer_sha256),
                             tokenizer_identity(locate_model(config.student, "--student"), "--student"),
                             f"--student {config.student}")
    k = config.top_k if config.selection == "topk" else min(config.samples_per_position, vocab_size)
    if config.selection == "topk" and k > vocab_size:
        raise InputError(f"--top-k {k}: exceeds the teacher's vocabulary of {vocab_size} tokens")
    training = (read_training_jsonl(config.train).first(config.train_limit) if config.train is not None else
                task_training_set(config.train_task, config.data_dir, config.include_path, config.train_limit))
    device = process_device(config.device, state)
    dtype_name = "bfloat16" if str(device).startswith("cuda") else "float32"
    max_length = config.max_length or int(getattr(teacher_config, "max_position_embeddings", None) or 2048)
    examples = tokenize_examples(training.examples, tokenizer, max_length)
    check_completion_tokens(training, examples)  # before T is fitted, the teacher loaded or a file written
    lengths = np.asarray([len(e.input_ids) for e in examples], dtype=np.int64)
    n_completion = np.asarray([e.n_completion for e in examples], dtype=np.int64)
    plan = settle_plan(output, state.num_processes, len(examples),
                       lambda: rank_ranges(lengths, n_completion, config.batch_size, state.num_processes))

    def open_writer(temperature: TeacherTemperature) -> KnowledgeStoreWriter:
        extra = {"training_data": training.to_dict(), "teacher_temperature": temperature.to_dict(),
                 "tokenization": {"scheme": "lm-eval _encode_pair (causal), left-truncated", "max_length": max_length},
                 "teacher_dtype": dtype_name, "sampling_seed": config.seed if config.selection == "sample" else None}
        try:
            return KnowledgeStoreWriter(
                output, vocab_size=vocab_size, k=k, tokenizer_sha256=tokenizer_sha256, teacher_path=str(config.teacher),
                teacher_config_sha256=teacher_config_sha256(teacher, model.config), temperature=temperature.value,
                temperature_source=temperature.label, selection=config.selection,
                samples_per_position=config.samples_per_position if config.selection == "sample" else None,
                prob_bits=config.prob_bits, shard_positions=config.shard_positions,
                shard_seconds=config.shard_seconds, extra=extra, first_sequence=plan.ranges[rank][0],
                shard_prefix=shard_prefix(rank if plan.world_size > 1 else None))
        except ValueError as error:
            raise InputError(f"--output {output}: {error}") from None

    if main:  # T is resolved once, here; the other ranks load the teacher meanwhile
        temperature = _teacher_temperature(config, output, teacher, dtype_name, device)
    model = load_teacher(teacher, device, getattr(torch, dtype_name))
    if main:
        writer = open_writer(temperature)  # refuses other settings before T is recorded over the old one
        write_json_atomically(output / TEMPERATURE_FILE, {"request": _temperature_request(config), **temperature.to_dict()})
        write_plan(output, plan)
        warn_if_idle(plan, windows.WINDOW_BATCHES * config.batch_size)
    state.wait_for_everyone()
    if not main:
        temperature = TeacherTemperature.from_dict(json.loads((output / TEMPERATURE_FILE).read_text(encoding="utf-8")))
        writer = open_writer(temperature)
    start = writer.next_sequence  # after this rank's complete shards
    positions, sampled_mass, seconds = run_teacher_passes(
        model, examples, writer, start, k, temperature.value, config, device, span=plan.ranges[rank],
        progress=config.progress and main)
    run = {"rank": rank, "first_sequence": plan.ranges[rank][0], "stop": plan.ranges[rank][1], "resumed_from": start,
           "positions_this_run": positions, "seconds": seconds, "device": str(device),
           "sampled_mass_sum": None if sampled_mass is None else sampled_mass * positions}
    manifest = finish_store(state, writer, plan, run, {
        "batch_size": config.batch_size, "truncated_examples": int(sum(e.truncated_tokens > 0 for e in examples)),
        "shard_seconds": config.shard_seconds})
    if main:
        _warn_if_below_resolution(manifest)
    extraction = manifest.stats["extraction"]
    return ExtractResult(output, manifest, temperature, extraction["resumed_from"], extraction["positions_this_run"],
                         extraction["seconds"], plan.world_size, rank)


def _warn_if_below_resolution(manifest: Manifest) -> None:
    """A flat tempered teacher (large T) can put p_1 under the step of 8-bit codes: the store then holds zeros."""
    import warnings

    identity = manifest.identity
    top1 = manifest.stats.get("top1_prob_mean")
    if identity.selection != "topk" or top1 is None or identity.quantization["probs"].get("bits") != 8:
        return
    step = identity.quantization["probs"]["max_abs_error"][0] * 2  # 1 / 255
    if top1 < 5 * step:
        warnings.warn(f"the tempered teacher is flat (T = {identity.temperature:.3g}: mean top-1 probability "
                      f"{top1:.2g}, 8-bit step {step:.2g}), so many stored probabilities round to 0; "
                      "extract with --prob-bits 16", stacklevel=3)


def _temperature_request(config: ExtractConfig) -> dict[str, Any]:
    option = config.teacher_temperature
    option = option.to_dict() if isinstance(option, TeacherTemperature) else str(option)
    return {"teacher_temperature": option, "calibrators_from": str(config.calibrators_from),
            "task": config.calibration_task or config.train_task, "limit": config.calibration_limit,
            "data_dir": str(config.data_dir), "include_path": str(config.include_path), "teacher": str(config.teacher),
            "level": config.temperature_level}


def _teacher_temperature(config: ExtractConfig, output: Path, teacher: ModelLocation, dtype: str,
                         device: str) -> TeacherTemperature:
    """T for this run; a resumed run reuses the one its first run recorded when the request is the same."""
    if isinstance(config.teacher_temperature, TeacherTemperature):
        return config.teacher_temperature  # resolved once upstream (first distill): flows down unchanged
    saved_path = output / TEMPERATURE_FILE
    if saved_path.is_file():
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
        if saved.get("request") == _temperature_request(config):
            return TeacherTemperature.from_dict(saved)
    task = config.calibration_task or config.train_task
    fit = None if task is None else TemperatureFitConfig(
        model_args=teacher.lm_eval_model_args(dtype), task=task, data_dir=config.data_dir,
        include_path=config.include_path, limit=config.calibration_limit, batch_size=config.batch_size,
        device=device, seed=config.seed, level=config.temperature_level, teacher=teacher)
    return resolve_teacher_temperature(config.teacher_temperature, config.calibrators_from, task, fit)


def run_teacher_passes(model: Any, examples: list[TokenizedExample], writer: KnowledgeStoreWriter, start: int, k: int,
                       temperature: float, config: ExtractConfig, device: str, span: tuple[int, int] | None = None,
                       progress: bool | None = None) -> tuple[int, float | None, float]:
    """Teacher passes from the window holding ``start``; writes sequences ``start..stop-1`` in order (``span`` =
    (first, stop): one rank's block; default all sequences). ``progress``: default ``config.progress``.

    Returns the positions written, for ``sample`` the mean teacher mass of the distinct sampled ids (else None),
    and the seconds spent (teacher passes, selection and writing; not model loading).
    """
    import torch

    lengths = np.asarray([len(e.input_ids) for e in examples], dtype=np.int64)
    n_completion = np.asarray([e.n_completion for e in examples], dtype=np.int64)
    span = span if span is not None else (0, len(examples))
    pad_id = int(getattr(model.config, "pad_token_id", None) or 0)
    empty = (np.zeros((0, k), np.int64), np.zeros((0, k), np.float32))
    written, covered_sum = 0, 0.0
    show = config.progress if progress is None else progress
    with progress_bar(int(n_completion[start:span[1]].sum()), "extracting", unit="positions", enabled=show) as bar, \
            torch.inference_mode():
        started = time.perf_counter()
        for window in plan_windows(lengths, n_completion, start, config.batch_size, span):
            results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            for indices in window.batches:
                batch = collate_teacher_batch(examples, indices, pad_id, device)
                ids, probs, covered = select_knowledge(completion_logits(model, batch), batch, temperature, k,
                                                       config.selection, config.samples_per_position, config.seed)
                new_rows = np.repeat(batch.indices, batch.n_completion) >= start  # rows not already on disk
                if covered is not None:
                    covered_sum += float(covered[new_rows].sum())
                bounds = np.concatenate([[0], np.cumsum(batch.n_completion)])
                for row, index in enumerate(batch.indices):
                    results[int(index)] = (ids[bounds[row]:bounds[row + 1]], probs[bounds[row]:bounds[row + 1]])
                bar.advance(int(new_rows.sum()))
            for index in range(max(start, window.first), window.stop):
                ids, probs = results.get(index, empty)
                writer.add(index, ids, probs)
                written += len(ids)
            writer.close_shard_if_due()  # between windows: the clock never cuts into a window's results
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    return written, (covered_sum / written if covered_sum and written else None), seconds
