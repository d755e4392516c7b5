"""The value every audit flows through: ragged per-question choice scores and the gold answer.

A multiple-choice question has 2..N choices; lm-eval gives one summed log-likelihood per choice.
Questions are stored *flat*: ``choice_scores[offsets[i]:offsets[i + 1]]`` are question ``i``'s
scores, so 100k questions are three numpy arrays, not 100k Python lists.

Probabilities are ``softmax(choice_scores / T)`` within each question (``T`` = temperature).

Score modes (how a choice's score is made from lm-eval's output):

- ``sum``: the summed log-likelihood of the continuation (lm-eval ``acc``).
- ``char-norm``: the sum divided by the continuation's length in characters (lm-eval ``acc_norm``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

SCORE_MODES = ("sum", "char-norm")


def ragged_max(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per-segment maximum. values: (total,), offsets: (n+1,) -> (n,)."""
    return np.maximum.reduceat(values, offsets[:-1])


def ragged_sum(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per-segment sum. values: (total,), offsets: (n+1,) -> (n,)."""
    return np.add.reduceat(values, offsets[:-1])


def ragged_log_softmax(scores: np.ndarray, offsets: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """log softmax(scores / T) within each segment, numerically stable. (total,) -> (total,)."""
    counts = np.diff(offsets)
    # The max is subtracted before dividing by T: scores near +-1e308 divided by T < 1 would overflow to inf.
    shifted = (scores - np.repeat(ragged_max(scores, offsets), counts)) / temperature
    log_norm = np.log(ragged_sum(np.exp(shifted), offsets))
    return shifted - np.repeat(log_norm, counts)


def ragged_argmax(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Index *within* each segment of its first maximum (ties -> lowest index, as ``np.argmax``)."""
    counts = np.diff(offsets)
    is_max = values == np.repeat(ragged_max(values, offsets), counts)
    max_positions = np.flatnonzero(is_max)
    first = max_positions[np.searchsorted(max_positions, offsets[:-1])]
    return first - offsets[:-1]


def apply_score_mode(loglik_sums: np.ndarray, char_lengths: np.ndarray | None, score_mode: str) -> np.ndarray:
    """Turn summed log-likelihoods into choice scores for ``score_mode`` (see module docstring)."""
    if score_mode == "sum":
        return np.asarray(loglik_sums, dtype=np.float64)
    if score_mode == "char-norm":
        if char_lengths is None:
            raise ValueError("score mode 'char-norm' needs the character length of every choice")
        lengths = np.asarray(char_lengths, dtype=np.float64)
        # lm-eval's acc_norm divides by len(choice) (which is >= 1 for real choices); guard empty strings.
        return np.asarray(loglik_sums, dtype=np.float64) / np.maximum(lengths, 1.0)
    raise ValueError(f"unknown score mode {score_mode!r}; expected one of {', '.join(SCORE_MODES)}")


class RaggedQuestions:
    """Shape of ragged per-question data: ``gold`` (n,) and ``offsets`` (n + 1,) into the flat choices."""

    gold: np.ndarray
    offsets: np.ndarray

    @property
    def n_questions(self) -> int:
        return len(self.gold)

    @property
    def n_choices(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass(frozen=True)
class ChoiceProbs(RaggedQuestions):
    """Ragged per-question choice probabilities (each segment sums to 1) and the gold index.

    Attributes:
        choice_probs: (total,) float64.
        offsets: (n+1,) int64 segment boundaries.
        gold: (n,) int64 gold index within each question.
        predictions: (n,) int64 predicted index within each question. Normally the argmax of
            ``choice_probs``; top-label recalibrators (Platt, isotonic) keep the original prediction.
    """

    choice_probs: np.ndarray
    offsets: np.ndarray
    gold: np.ndarray
    predictions: np.ndarray

    @classmethod
    def from_probs(cls, choice_probs: np.ndarray, offsets: np.ndarray, gold: np.ndarray) -> "ChoiceProbs":
        return cls(choice_probs, offsets, gold, ragged_argmax(choice_probs, offsets))

    @property
    def confidences(self) -> np.ndarray:
        """(n,) probability of the predicted choice (top-label confidence)."""
        return self.choice_probs[self.offsets[:-1] + self.predictions]

    @property
    def correct(self) -> np.ndarray:
        """(n,) bool, prediction == gold."""
        return self.predictions == self.gold

    @property
    def gold_probs(self) -> np.ndarray:
        """(n,) probability given to the gold choice."""
        return self.choice_probs[self.offsets[:-1] + self.gold]

    def subset(self, question_idx: np.ndarray) -> "ChoiceProbs":
        probs, offsets = _take_segments(self.choice_probs, self.offsets, question_idx)
        return ChoiceProbs(probs, offsets, self.gold[question_idx], self.predictions[question_idx])


@dataclass(frozen=True)
class ChoiceScores(RaggedQuestions):
    """Ragged per-question choice scores (log-likelihood-like, any real number) and the gold index.

    Attributes:
        choice_scores: (total,) float64, question i's choices at ``offsets[i]:offsets[i+1]``.
        offsets: (n+1,) int64, ``offsets[0] == 0``, strictly increasing by >= 2 (two or more choices).
        gold: (n,) int64, ``0 <= gold[i] < n_choices[i]``.
        score_mode: how the scores were made (``sum`` or ``char-norm``); informational.
    """

    choice_scores: np.ndarray
    offsets: np.ndarray
    gold: np.ndarray
    score_mode: str = "sum"

    def __post_init__(self) -> None:
        scores = np.asarray(self.choice_scores, dtype=np.float64)
        offsets = np.asarray(self.offsets, dtype=np.int64)
        gold = np.asarray(self.gold, dtype=np.int64)
        object.__setattr__(self, "choice_scores", scores)
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "gold", gold)
        if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(scores):
            raise ValueError(f"offsets must start at 0 and end at {len(scores)}; got {offsets[:3]}...{offsets[-3:]}")
        counts = np.diff(offsets)
        if len(gold) != len(counts):
            raise ValueError(f"{len(gold)} gold indices for {len(counts)} questions")
        if (counts < 2).any():
            bad = int(np.flatnonzero(counts < 2)[0])
            raise ValueError(f"question {bad} has {int(counts[bad])} choice(s); at least 2 are needed")
        if not np.isfinite(scores).all():
            bad = int(np.flatnonzero(~np.isfinite(scores))[0])
            question = int(np.searchsorted(offsets, bad, side="right") - 1)
            raise ValueError(f"question {question} has a non-finite choice score {scores[bad]!r}")
        out_of_range = (gold < 0) | (gold >= counts)
        if out_of_range.any():
            bad = int(np.flatnonzero(out_of_range)[0])
            raise ValueError(f"question {bad}: gold index {int(gold[bad])} is outside 0..{int(counts[bad]) - 1}")

    @classmethod
    def from_lists(cls, choice_scores: Sequence[Sequence[float]], gold: Sequence[int], score_mode: str = "sum") -> "ChoiceScores":
        """Build from a list of per-question score lists (convenient for tests and small inputs)."""
        counts = np.array([len(s) for s in choice_scores], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        flat = np.fromiter((x for s in choice_scores for x in s), dtype=np.float64, count=int(offsets[-1]))
        return cls(flat, offsets, np.asarray(gold, dtype=np.int64), score_mode)

    def log_probs(self, temperature: float = 1.0) -> np.ndarray:
        """(total,) log softmax(scores / T) within each question."""
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0; got {temperature!r}")
        return ragged_log_softmax(self.choice_scores, self.offsets, temperature)

    def probabilities(self, temperature: float = 1.0) -> ChoiceProbs:
        """Per-question softmax(scores / T). Predictions are argmax of the scores (T does not change them)."""
        probs = np.exp(self.log_probs(temperature))
        return ChoiceProbs(probs, self.offsets, self.gold, ragged_argmax(self.choice_scores, self.offsets))

    def gold_log_probs(self, temperature: float = 1.0) -> np.ndarray:
        """(n,) log-probability of the gold choice at temperature T."""
        return self.log_probs(temperature)[self.offsets[:-1] + self.gold]

    def subset(self, question_idx: np.ndarray) -> "ChoiceScores":
        """The questions at ``question_idx`` (in that order)."""
        scores, offsets = _take_segments(self.choice_scores, self.offsets, np.asarray(question_idx))
        return ChoiceScores(scores, offsets, self.gold[question_idx], self.score_mode)


def concatenate_choice_scores(parts: Sequence[ChoiceScores]) -> ChoiceScores:
    """The questions of every part, in order, as one ``ChoiceScores`` (e.g. several tasks pooled for one fit).

    The parts must share one score mode; ``ValueError`` otherwise or for an empty list."""
    parts = list(parts)
    if not parts:
        raise ValueError("nothing to concatenate")
    modes = {part.score_mode for part in parts}
    if len(modes) > 1:
        raise ValueError(f"cannot pool scores of different score modes {sorted(modes)}")
    counts = np.concatenate([part.n_choices for part in parts])
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return ChoiceScores(np.concatenate([part.choice_scores for part in parts]), offsets,
                        np.concatenate([part.gold for part in parts]), parts[0].score_mode)


def _take_segments(values: np.ndarray, offsets: np.ndarray, question_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = np.diff(offsets)[question_idx]
    new_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    starts = np.repeat(offsets[:-1][question_idx], counts)
    within = np.arange(new_offsets[-1]) - np.repeat(new_offsets[:-1], counts)
    return values[starts + within], new_offsets
