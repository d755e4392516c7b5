"""The numbers that show the demo world behaves as the FIRST paper says.

Top-label ECE (Guo et al., ICML 2017, "On Calibration of Modern Neural Networks", eq. 3)::

    ECE = sum_b |B_b| / n * |acc(B_b) - conf(B_b)|,  B_b = {i : conf_i in ((b-1)/M, b/M]}, M = 10

and temperature scaling (same paper, sec. 4.2): ``T* = argmin_T mean_i -log softmax(s_i / T)[gold_i]``
fitted on a validation split. These small self-contained versions keep the world's own checks free
of ``first_eval``'s metric modules; the audit (``first report``) computes the same quantities.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def top_label_ece(confidences: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> float:
    """Equal-width top-label ECE. confidences: (n,) in [0, 1]; correct: (n,) bool -> float."""
    confidences = np.asarray(confidences, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if confidences.shape != correct.shape or confidences.ndim != 1 or len(confidences) == 0:
        raise ValueError(f"need two equal non-empty 1-d arrays; got shapes {confidences.shape} and {correct.shape}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges[1:-1], confidences, side="left"), 0, n_bins - 1)
    gap = np.bincount(bins, weights=correct - confidences, minlength=n_bins)
    return float(np.abs(gap).sum() / len(confidences))


def fit_temperature(choice_scores, low: float = 0.05, high: float = 20.0) -> float:
    """Temperature minimising the mean gold NLL of ``choice_scores`` (a ``ChoiceScores``), in [low, high]."""
    from scipy.optimize import minimize_scalar

    def mean_nll(log_t: float) -> float:
        return float(-choice_scores.gold_log_probs(float(np.exp(log_t))).mean())

    result = minimize_scalar(mean_nll, bounds=(np.log(low), np.log(high)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


@dataclass(frozen=True)
class CalibrationSummary:
    """Accuracy, mean top-label confidence, ECE (10 bins) and mean gold NLL of one predictor on one split."""

    n_questions: int
    accuracy: float
    mean_confidence: float
    ece: float
    nll: float

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(choice_scores, temperature: float = 1.0) -> CalibrationSummary:
    """``CalibrationSummary`` of ``softmax(choice_scores / temperature)``."""
    probs = choice_scores.probabilities(temperature)
    return CalibrationSummary(
        n_questions=int(probs.n_questions),
        accuracy=float(probs.correct.mean()),
        mean_confidence=float(probs.confidences.mean()),
        ece=top_label_ece(probs.confidences, probs.correct),
        nll=float(-choice_scores.gold_log_probs(temperature).mean()),
    )
