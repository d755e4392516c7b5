"""Read lm-eval per-sample records into ``TaskSamples`` (choice log-likelihoods + gold per question).

Two sources, one record format:

- files lm-eval's ``EvaluationTracker`` wrote (``samples_<task>_<date>.jsonl``), where ``resps``,
  ``filtered_resps`` and ``target`` are *stringified* (``[["-11.35", "False"]]``, ``"0"``);
- in-memory ``results["samples"][task]`` from ``simple_evaluate(log_samples=True)``, or a results JSON
  holding that ``samples`` mapping, where values keep their types.

For a multiple-choice task, record ``r`` has ``r["filtered_resps"][j] = (summed loglik of choice j,
is_greedy)`` and ``r["arguments"][j] = (context, target_delimiter + choice_j)`` (saved files wrap
arguments as ``{"gen_args_j": {"arg_0": context, "arg_1": continuation}}``).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from first_eval.errors import InputError
from first_eval.lm_eval_bridge.record_fields import (
    _are_letters, _choice_logliks, _continuations, _doc_id, _gold_index, _has_unconditional_half, _is_number_like, _short,
    _strip_delimiter)
from first_eval.json_input import json_error_reason, json_lines, open_input, parse_json, read_json_value, rejoin
from first_eval.scores import ChoiceScores, apply_score_mode

_SAMPLES_FILE = re.compile(r"^samples_(?P<task>.+)_(?P<date>\d{4}-\d{2}-\d{2}T[\d\-.:]+)\.jsonl$")
_UNSET = object()  # no record read yet (a record's own filter may be None)


@dataclass(frozen=True)
class TaskSamples:
    """One task's questions as lm-eval scored them.

    Attributes:
        task: task name.
        source: where the records came from (a path, or ``"lm-eval run"``).
        loglik_sums: (total,) summed log-likelihood of each choice's continuation.
        char_lengths: (total,) character length of each choice (without the target delimiter),
            as lm-eval's ``acc_norm`` uses; None when it cannot be known (multiple-input tasks).
        offsets: (n+1,) question i's choices are ``[offsets[i], offsets[i+1])``.
        gold: (n,) gold index within each question.
        doc_ids: (n,) lm-eval's doc ids.
        recorded: lm-eval's own per-question metrics found in the records (``acc``, ``acc_norm``), (n,) each.
        is_greedy: (total,) lm-eval's ``is_greedy`` of each choice (its continuation is the model's greedy
            continuation), or None when the records do not hold it.
        lettered: every question's choices are the letters ``A, B, ...`` (a lettered multiple-choice task), so
            ``exp(loglik_sums)`` are next-token probabilities of the letters.
        notes: sentences about how the task was run, shown with its audit.
    """

    task: str
    source: str
    loglik_sums: np.ndarray
    char_lengths: np.ndarray | None
    offsets: np.ndarray
    gold: np.ndarray
    doc_ids: np.ndarray
    recorded: dict[str, np.ndarray]
    is_greedy: np.ndarray | None = None
    lettered: bool = False
    notes: tuple[str, ...] = ()

    @property
    def n_questions(self) -> int:
        return len(self.gold)

    def tempered(self, temperature: float) -> "TaskSamples":
        """The same questions with every choice score divided by a fixed, pre-fitted ``temperature``."""
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0; got {temperature!r}")
        return dataclasses.replace(self, loglik_sums=self.loglik_sums / temperature,
                                   source=f"{self.source} / T={temperature:.4g}")

    def choice_scores(self, score_mode: str = "sum") -> ChoiceScores:
        if score_mode == "char-norm" and self.char_lengths is None:
            raise InputError(
                f"task {self.task!r}: --score char-norm needs each choice's text, but its choices are "
                "placed in the context (a multiple-input task); use --score sum"
            )
        scores = apply_score_mode(self.loglik_sums, self.char_lengths, score_mode)
        return ChoiceScores(scores, self.offsets, self.gold, score_mode)


def task_name_from_path(path: Path) -> str | None:
    """``samples_arc_easy_2024-05-01T12-00-00.123456.jsonl`` -> ``arc_easy``; None if not that shape."""
    match = _SAMPLES_FILE.match(path.name)
    return match.group("task") if match else None


def read_samples_path(path: Path) -> list[TaskSamples]:
    """Read one samples JSONL (one task) or one results JSON holding ``samples`` (one or more tasks).

    A JSONL file is read line by line, each record converted as it comes (memory follows the questions, not
    the file); a ``.json`` file, or a file holding one JSON value, is parsed whole. Anything else that
    cannot be read (a device, a binary file, JSON nested too deeply ...) is one ``InputError``.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; pass the samples_*.jsonl or results*.json files inside it")
    with open_input(path, hint="; pass an lm-eval samples_<task>_<date>.jsonl file") as stream:
        if path.suffix == ".json":
            return _tasks_from_document(read_json_value(stream, path), path)
        lines = json_lines(stream, path)
        first = next(lines, None)
        if first is None:
            raise InputError(f"{path}: the file is empty")
        second = next(lines, None)
        line_number, text = first
        try:
            record = parse_json(text)
        except ValueError as error:
            line_error = f"{path}: line {line_number}: not valid JSON ({json_error_reason(error)})"
            if second is None or not text.lstrip().startswith(("{", "[")):
                raise InputError(line_error) from None
            # Maybe a pretty-printed JSON document (a results JSON under another name): parse the whole file;
            # if it is not one either, the first line is what is wrong.
            document = read_json_value(stream, path, already=rejoin([first, second]), syntax_error=line_error)
            return _tasks_from_document(document, path)
        if second is None and isinstance(record, dict):  # a one-line file: a results JSON or a single record
            return _tasks_from_document(record, path)
        rest = _jsonl_records(itertools.chain([second] if second else [], lines), path)
        records = itertools.chain([(line_number, record)], rest)
        return [task_samples_from_records(records, _task_for_file(path, [record]), str(path))]


def _tasks_from_document(document: Any, path: Path) -> list[TaskSamples]:
    if isinstance(document, dict) and "samples" in document:
        return _tasks_from_results(document, path)
    if isinstance(document, dict) and "doc_id" in document:
        return [task_samples_from_records([(1, document)], _task_for_file(path, [document]), str(path))]
    raise InputError(
        f"{path}: a JSON {'object' if isinstance(document, dict) else type(document).__name__} without a 'samples' "
        "field; rerun lm-eval with --log_samples and pass the samples_<task>_<date>.jsonl file"
    )


def task_samples_from_records(numbered_records: Iterable[tuple[int, dict]] | Iterable[dict], task: str, source: str,
                              notes: tuple[str, ...] = ()) -> TaskSamples:
    """Convert lm-eval sample records (stringified or not) to ``TaskSamples``.

    ``numbered_records`` yields ``(line_number, record)`` pairs (for error messages) or bare records.
    lm-eval writes one record per (doc, filter); when a doc appears under several filters, the first
    filter's record is used. The same ``doc_id`` twice under one filter is refused (files of two runs
    concatenated, say), as is a ``doc_id`` that is not an integer.
    """
    loglik_sums: list[float] = []
    greedy: list[bool] = []
    has_greedy = True
    lettered = True
    char_lengths: list[float] = []
    counts: list[int] = []
    gold: list[int] = []
    doc_ids: list[int] = []
    recorded: dict[str, list[float]] = {"acc": [], "acc_norm": []}
    has_recorded = {"acc": True, "acc_norm": True}
    multiple_input = False
    seen_docs: set[tuple[str | None, int]] = set()
    duplicates: list[tuple[int, int]] = []  # (line, doc_id) of each record repeating a (filter, doc_id)
    first_filter: Any = _UNSET

    for position, item in enumerate(numbered_records, start=1):
        line, record = item if isinstance(item, tuple) else (position, item)
        where = f"{source}: line {line}" if source != "lm-eval run" else f"task {task}: sample {line}"
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(record).__name__}")
        record_filter = record.get("filter")
        if record_filter is not None and not isinstance(record_filter, str):
            raise InputError(f"{where}: field 'filter' is {_short(record_filter)}, not a filter name")
        doc_id = _doc_id(record.get("doc_id", position - 1), where)
        if (record_filter, doc_id) in seen_docs:
            duplicates.append((line, doc_id))
            continue
        seen_docs.add((record_filter, doc_id))
        first_filter = record_filter if first_filter is _UNSET else first_filter
        if record_filter != first_filter:
            continue

        lls, flags = _choice_logliks(record, where)
        continuations, same_continuation = _continuations(record, len(lls))
        if continuations and _has_unconditional_half(record):
            lls, flags = lls[: len(lls) // 2], flags[: len(lls) // 2]
            continuations = continuations[: len(lls)]
        has_greedy = has_greedy and None not in flags
        greedy.extend(bool(flag) for flag in flags)
        lettered = lettered and continuations is not None and not same_continuation and _are_letters(continuations)
        if len(lls) < 2:
            raise InputError(f"{where}: field 'filtered_resps' has {len(lls)} choice(s); calibration needs 2 or more")
        target = _gold_index(record.get("target"), continuations, len(lls), where)

        loglik_sums.extend(lls)
        counts.append(len(lls))
        gold.append(target)
        doc_ids.append(doc_id)
        if same_continuation:
            multiple_input = True
        elif continuations is not None:
            char_lengths.extend(float(len(c)) for c in _strip_delimiter(continuations))
        for key in recorded:
            value = record.get(key)
            if value is None or not _is_number_like(value):
                has_recorded[key] = False
            else:
                recorded[key].append(float(value))
                if recorded[key][-1] not in (0.0, 1.0):
                    raise InputError(
                        f"{where}: field {key!r} is {value!r}, not 0 or 1: this task scores questions itself "
                        "(e.g. truthfulqa_mc2's probability mass), so its choices have no single gold answer to calibrate"
                    )

    origin = source if source != "lm-eval run" else f"task {task}"
    if duplicates:
        shown = ", ".join(f"{doc_id} (line {line})" for line, doc_id in duplicates[:5])
        raise InputError(
            f"{origin}: {len(duplicates)} record(s) repeat a doc_id already seen under the same filter, e.g. doc_id "
            f"{shown}{', ...' if len(duplicates) > 5 else ''}; lm-eval writes each question once per filter "
            "(were the samples files of two runs concatenated?)"
        )
    if not counts:
        raise InputError(f"{origin}: no samples found")
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    lengths = None if multiple_input or len(char_lengths) != offsets[-1] else np.asarray(char_lengths)
    return TaskSamples(
        task=task,
        source=source,
        loglik_sums=np.asarray(loglik_sums, dtype=np.float64),
        char_lengths=lengths,
        offsets=offsets,
        gold=np.asarray(gold, dtype=np.int64),
        doc_ids=np.asarray(doc_ids, dtype=np.int64),
        recorded={k: np.asarray(v) for k, v in recorded.items() if has_recorded[k] and len(v) == len(counts)},
        is_greedy=np.asarray(greedy, dtype=bool) if has_greedy else None,
        lettered=lettered,
        notes=tuple(notes),
    )


def _jsonl_records(lines: Iterable[tuple[int, str]], path: Path) -> Iterator[tuple[int, Any]]:
    for line_number, line in lines:
        try:
            record = parse_json(line)
        except ValueError as error:
            raise InputError(f"{path}: line {line_number}: not valid JSON ({json_error_reason(error)})") from None
        yield line_number, record


def _tasks_from_results(document: dict, path: Path) -> list[TaskSamples]:
    samples = document["samples"]
    if not isinstance(samples, dict) or not samples:
        raise InputError(f"{path}: field 'samples' should map task names to lists of records; it is empty or not a mapping")
    tasks = []
    for task, records in samples.items():
        if not isinstance(records, list):
            raise InputError(f"{path}: field 'samples.{task}' should be a list of records")
        tasks.append(task_samples_from_records(list(enumerate(records, start=1)), task, f"{path} [samples.{task}]"))
    return tasks


def _task_for_file(path: Path, first_records: list[dict]) -> str:
    name = task_name_from_path(path)
    if name:
        return name
    for record in first_records:
        if isinstance(record, dict) and isinstance(record.get("task"), str):
            return record["task"]
    return path.stem
