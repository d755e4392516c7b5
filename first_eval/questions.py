"""An audit's per-question answers, kept beside its report so that two audits of the same questions can be paired.

``first report`` writes ``questions.jsonl.gz`` next to ``metrics.json``: gzip-compressed JSON Lines (header mtime 0,
so the same audit gives the same bytes), one object per question::

    {"task": "arc_easy", "doc_id": 17, "gold": 2, "chosen": 2, "confidence": 0.83,
     "probs": [0.05, 0.12, 0.83], "confidence_ts": 0.71}

``probs`` are the choice probabilities the audit scored (softmax over the choices), ``chosen`` the top-scored
choice, ``confidence`` its probability, ``confidence_ts`` the chosen answer's probability after cross-fitted
temperature scaling (each question scored by the temperature fit on the other folds; null when none was fit).
Floats are written with Python's ``repr``, so a reader gets back the exact float64 values.

``first compare`` reads it (``read_questions``), lines the questions of two audits up by ``doc_id``
(``common_questions``) and takes paired differences (``first_eval.metrics.paired``).
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from first_eval.errors import InputError
from first_eval.json_input import json_lines, open_input, parse_json
from first_eval.metrics.paired import QuestionOutcomes
from first_eval.metrics.proper_scores import per_question_brier, per_question_nll
from first_eval.scores import ChoiceProbs, RaggedQuestions

QUESTIONS_FILE = "questions.jsonl.gz"
QUESTIONS_SCHEMA = "first.questions/1"
QUESTION_FIELDS = ("task", "doc_id", "gold", "chosen", "confidence", "probs", "confidence_ts")


@dataclass(frozen=True)
class QuestionTable(RaggedQuestions):
    """One task's questions: ``doc_ids``, ``gold``, ``chosen``, ``confidence`` (n,), ragged ``choice_probs``
    (total,) with ``offsets`` (n+1,), and ``confidence_ts`` (n,) or None."""

    doc_ids: np.ndarray
    gold: np.ndarray
    chosen: np.ndarray
    confidence: np.ndarray
    choice_probs: np.ndarray
    offsets: np.ndarray
    confidence_ts: np.ndarray | None = None

    @classmethod
    def from_probs(cls, doc_ids: np.ndarray, probs: ChoiceProbs,
                   calibrated_confidences: np.ndarray | None = None) -> "QuestionTable":
        return cls(np.asarray(doc_ids, dtype=np.int64), probs.gold.astype(np.int64), probs.predictions.astype(np.int64),
                   probs.confidences.astype(np.float64), probs.choice_probs.astype(np.float64),
                   probs.offsets.astype(np.int64), None if calibrated_confidences is None
                   else np.asarray(calibrated_confidences, dtype=np.float64))

    @property
    def n(self) -> int:
        return self.n_questions

    def outcomes(self, index: np.ndarray | None = None, n_bins: int = 15) -> QuestionOutcomes:
        """The per-question values the paired metrics need, for the questions at ``index`` (all by default)."""
        brier = per_question_brier(self.choice_probs, self.offsets, self.gold)
        nll = per_question_nll(self.choice_probs, self.offsets, self.gold)
        outcomes = QuestionOutcomes(self.confidence, self.chosen == self.gold, brier, nll, self.confidence_ts, n_bins)
        return outcomes if index is None else outcomes.subset(index)

    def rows(self, task: str) -> Iterator[dict[str, Any]]:
        for i in range(self.n):
            yield {"task": task, "doc_id": int(self.doc_ids[i]), "gold": int(self.gold[i]), "chosen": int(self.chosen[i]),
                   "confidence": float(self.confidence[i]),
                   "probs": self.choice_probs[self.offsets[i]:self.offsets[i + 1]].tolist(),
                   "confidence_ts": None if self.confidence_ts is None else float(self.confidence_ts[i])}


def questions_bytes(tables: Mapping[str, QuestionTable]) -> bytes:
    """The gzip-compressed JSON Lines of every task's questions (same tables -> same bytes)."""
    text = "".join(json.dumps(row, allow_nan=False) + "\n" for task, table in tables.items() for row in table.rows(task))
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=6) as stream:
        stream.write(text.encode("utf-8"))
    return buffer.getvalue()


@dataclass(frozen=True)
class Pairing:
    """Questions two audits share: ``model_index[j]`` and ``base_index[j]`` are the same doc_id (baseline order)."""

    model_index: np.ndarray
    base_index: np.ndarray
    n_model: int
    n_base: int
    n_disagreeing: int  # doc_ids in both whose gold answer or number of choices differ (not the same question)

    @property
    def n(self) -> int:
        return len(self.base_index)

    @property
    def complete(self) -> bool:
        return self.n == self.n_model == self.n_base


def common_questions(model: QuestionTable, baseline: QuestionTable) -> Pairing:
    """Pair the questions of two audits on their doc_ids; a doc_id whose gold or choice count differs is left out."""
    position = {int(doc_id): i for i, doc_id in enumerate(model.doc_ids)}
    model_index, base_index, disagreeing = [], [], 0
    model_choices, base_choices = model.n_choices, baseline.n_choices
    for j, doc_id in enumerate(baseline.doc_ids):
        i = position.get(int(doc_id))
        if i is None:
            continue
        if model.gold[i] != baseline.gold[j] or model_choices[i] != base_choices[j]:
            disagreeing += 1
            continue
        model_index.append(i)
        base_index.append(j)
    return Pairing(np.asarray(model_index, dtype=np.int64), np.asarray(base_index, dtype=np.int64),
                   model.n, baseline.n, disagreeing)


# A question's line holds a few numbers per choice; anything near this is not a questions file.
MAX_QUESTION_LINE_BYTES = 1 << 20


def read_questions(path: Path) -> dict[str, QuestionTable]:
    """Read a ``questions.jsonl.gz`` written by ``first report``; ``InputError`` naming the line and field otherwise."""
    tables: dict[str, dict[str, list]] = {}
    seen: set[tuple[str, int]] = set()
    with open_input(path) as raw:
        if raw.peek(2)[:2] != b"\x1f\x8b":
            raise InputError(f"{path}: not a readable gzip file (it does not start with gzip's magic bytes); rerun "
                             "`first report` to rewrite it")
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                for line_number, text in json_lines(stream, path):
                    row = _check_row(text, line_number, path)
                    key = (row["task"], row["doc_id"])
                    if key in seen:
                        raise InputError(f"{path}: line {line_number}: task {row['task']!r} doc_id {row['doc_id']} "
                                         "appears twice")
                    seen.add(key)
                    table = tables.setdefault(row["task"], {field: [] for field in QUESTION_FIELDS[1:]})
                    for field in QUESTION_FIELDS[1:]:
                        table[field].append(row.get(field))
        except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
            raise InputError(f"{path}: not a readable gzip file ({error}); rerun `first report` to rewrite it") from None
    return {task: _table(columns) for task, columns in tables.items()}


def _table(columns: Mapping[str, list]) -> QuestionTable:
    counts = np.array([len(p) for p in columns["probs"]], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    calibrated = columns["confidence_ts"]
    return QuestionTable(
        np.asarray(columns["doc_id"], dtype=np.int64), np.asarray(columns["gold"], dtype=np.int64),
        np.asarray(columns["chosen"], dtype=np.int64), np.asarray(columns["confidence"], dtype=np.float64),
        np.fromiter((p for probs in columns["probs"] for p in probs), dtype=np.float64, count=int(offsets[-1])),
        offsets, None if any(c is None for c in calibrated) else np.asarray(calibrated, dtype=np.float64))


def _check_row(text: str, line_number: int, path: Path) -> dict[str, Any]:
    where = f"{path}: line {line_number}"
    try:
        row = parse_json(text)
    except ValueError:
        raise InputError(f"{where}: not a JSON object; rerun `first report` to rewrite the file") from None
    if not isinstance(row, dict):
        raise InputError(f"{where}: not a JSON object")

    def bad(field: str, expected: str) -> InputError:
        value = repr(row.get(field))
        return InputError(f"{where}: field {field!r} is {value if len(value) < 60 else value[:57] + '...'}, not {expected}")

    if not isinstance(row.get("task"), str):
        raise bad("task", "a task name")
    for field in ("doc_id", "gold", "chosen"):
        if isinstance(row.get(field), bool) or not isinstance(row.get(field), int) or not -2**63 <= row[field] < 2**63:
            raise bad(field, "an integer")
    probs = row.get("probs")
    if not (isinstance(probs, list) and len(probs) >= 2 and all(_probability(p) for p in probs)):
        raise bad("probs", "a list of two or more probabilities")
    for field in ("gold", "chosen"):
        if not 0 <= row[field] < len(probs):
            raise bad(field, f"a choice index in 0..{len(probs) - 1}")
    if not _probability(row.get("confidence")):
        raise bad("confidence", "a probability")
    if row.get("confidence_ts") is not None and not _probability(row["confidence_ts"]):
        raise bad("confidence_ts", "a probability or null")
    return row


def _probability(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0.0 <= value <= 1.0
