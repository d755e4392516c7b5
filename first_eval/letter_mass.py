"""Lettered questions: how much of the model's next-token probability the letters get, and the paper's raw form.

For a lettered question (choices ``" A"``, ``" B"``, ... after the prompt) lm-eval's log-likelihood of choice
``j`` is ``log p(letter_j | prompt)``, one token, over the model's whole vocabulary. Two things follow:

- **letter mass** ``m = sum_j exp(loglik_j)``: the share of the next-token distribution on the valid letters.
  The audit's choice probabilities renormalise over the letters (``softmax`` of the log-likelihoods, what
  lm-eval's ``acc`` compares); they mean what they say only when ``m`` is near 1. A model that mostly answers
  with something else (a space, "The", a newline) has a small ``m``, and its renormalised confidences describe
  a conditional it seldom uses.
- **the unrenormalised form** (closest to the FIRST paper's released evaluation, which reads the next-token
  distribution after the prompt): confidence = ``exp(loglik)`` of the most likely letter, *not* renormalised,
  and a question counts as correct only when the gold letter is the model's greedy next token (lm-eval's
  ``is_greedy``), i.e. the model would actually answer it.

Pure numpy: ``letter_summary(...) -> LetterSummary``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from first_eval.metrics import auroc, ece
from first_eval.scores import ragged_argmax, ragged_sum

# Below this mean letter mass the model mostly does not answer with a letter: the report warns.
LOW_LETTER_MASS = 0.5


@dataclass(frozen=True)
class LetterSummary:
    """Letter mass and the unrenormalised (greedy) metrics of one lettered task.

    Attributes:
        mean_mass, median_mass: of ``m`` per question (module docstring).
        lowest_decile_mass: the 10th percentile of ``m`` (one question in ten has less).
        share_below_half: share of questions with ``m < 0.5``.
        raw_accuracy: share of questions whose gold letter is the greedy next token (None without ``is_greedy``).
        raw_mean_confidence, raw_ece, raw_brier, raw_auroc: of the unrenormalised confidence against that
            correctness (Brier of the chosen letter, binary); None without ``is_greedy``.
    """

    n: int
    mean_mass: float
    median_mass: float
    lowest_decile_mass: float
    share_below_half: float
    raw_accuracy: float | None
    raw_mean_confidence: float | None
    raw_ece: float | None
    raw_brier: float | None
    raw_auroc: float | None

    @property
    def mostly_not_letters(self) -> bool:
        return self.mean_mass < LOW_LETTER_MASS

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n, "mean_mass": self.mean_mass, "median_mass": self.median_mass,
            "lowest_decile_mass": self.lowest_decile_mass, "share_below_half": self.share_below_half,
            "unrenormalised": {
                "accuracy": self.raw_accuracy, "mean_confidence": self.raw_mean_confidence, "ece": self.raw_ece,
                "brier": self.raw_brier, "auroc": self.raw_auroc,
                "definition": "confidence = p(most likely letter) over the whole vocabulary; correct = the gold "
                              "letter is the greedy next token (lm-eval is_greedy)",
            },
        }


def letter_masses(letter_logliks: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(n,) ``sum_j exp(loglik_j)`` per question. letter_logliks: (total,) log p(letter | prompt); offsets: (n+1,)."""
    return np.minimum(ragged_sum(np.exp(np.asarray(letter_logliks, dtype=np.float64)), offsets), 1.0)


def letter_summary(letter_logliks: np.ndarray, offsets: np.ndarray, gold: np.ndarray,
                   is_greedy: np.ndarray | None, n_bins: int = 15) -> LetterSummary:
    """Letter mass statistics and the unrenormalised metrics (module docstring).

    letter_logliks: (total,) ragged log-likelihoods of each question's letters; offsets: (n+1,); gold: (n,);
    is_greedy: (total,) bool, or None when the records do not hold it.
    """
    logliks = np.asarray(letter_logliks, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    masses = letter_masses(logliks, offsets)
    raw = dict.fromkeys(("accuracy", "confidence", "ece", "brier", "auroc"))
    if is_greedy is not None:
        chosen = ragged_argmax(logliks, offsets)
        confidences = np.exp(logliks[offsets[:-1] + chosen])
        correct = np.asarray(is_greedy, dtype=bool)[offsets[:-1] + np.asarray(gold, dtype=np.int64)]
        raw = {
            "accuracy": float(correct.mean()),
            "confidence": float(confidences.mean()),
            "ece": float(ece(confidences, correct, n_bins=n_bins)),
            "brier": float(np.mean((confidences - correct) ** 2)),
            "auroc": auroc(confidences, correct),
        }
    return LetterSummary(
        n=len(masses), mean_mass=float(masses.mean()), median_mass=float(np.median(masses)),
        lowest_decile_mass=float(np.quantile(masses, 0.1)), share_below_half=float((masses < 0.5).mean()),
        raw_accuracy=raw["accuracy"], raw_mean_confidence=raw["confidence"], raw_ece=raw["ece"],
        raw_brier=raw["brier"], raw_auroc=None if raw["auroc"] is None else float(raw["auroc"]),
    )
