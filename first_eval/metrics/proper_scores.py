"""Strictly proper scores over all choices of each question: multiclass Brier score and NLL.

Unlike the calibration errors these look at every choice's probability, not only the chosen one, and
reward sharpness as well as calibration (Gneiting & Raftery 2007). Questions are ragged: question
``i``'s choice probabilities are ``choice_probs[offsets[i]:offsets[i+1]]`` (see ``first_eval.scores``).

    Brier_i = sum_j (p_ij - 1[j = gold_i])^2     (Brier 1950; range [0, 2])
    NLL_i   = -log max(p_i,gold, eps),   eps = float64 machine epsilon (2.2e-16, so NLL_i <= 36.04)

and the scores are their means over questions. The Brier score is *not* halved and not divided by the
number of choices: it equals ``sklearn.metrics.brier_score_loss(gold, probs, scale_by_half=False)`` when
every question has the same choices. The NLL clipping matches ``sklearn.metrics.log_loss``'s default
(``eps = np.finfo(probs.dtype).eps``), so one saturated wrong answer costs at most 36 nats, not infinity.
"""

from __future__ import annotations

import numpy as np

from first_eval.scores import ragged_sum

NLL_EPS = float(np.finfo(np.float64).eps)


def _check_ragged(choice_probs, offsets, gold) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    choice_probs = np.asarray(choice_probs, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    gold = np.asarray(gold, dtype=np.int64)
    if offsets.ndim != 1 or len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != len(choice_probs):
        raise ValueError(f"offsets must start at 0 and end at {len(choice_probs)} with at least one question; "
                         f"got {offsets[:3]}...{offsets[-3:]}")
    counts = np.diff(offsets)
    if len(gold) != len(counts):
        raise ValueError(f"{len(gold)} gold indices for {len(counts)} questions")
    if (counts < 1).any():
        bad = int(np.flatnonzero(counts < 1)[0])
        raise ValueError(f"question {bad} has no choices")
    out_of_range = (gold < 0) | (gold >= counts)
    if out_of_range.any():
        bad = int(np.flatnonzero(out_of_range)[0])
        raise ValueError(f"question {bad}: gold index {int(gold[bad])} is outside 0..{int(counts[bad]) - 1}")
    if not ((choice_probs >= 0) & (choice_probs <= 1)).all():
        bad = int(np.flatnonzero(~((choice_probs >= 0) & (choice_probs <= 1)))[0])
        raise ValueError(f"choice probabilities must lie in [0, 1]; got {choice_probs[bad].item()!r} at position {bad}")
    return choice_probs, offsets, gold


def per_question_brier(choice_probs, offsets, gold) -> np.ndarray:
    """(n,) multiclass Brier score of each question, ``sum_j (p_j - 1[j = gold])^2``."""
    choice_probs, offsets, gold = _check_ragged(choice_probs, offsets, gold)
    errors = choice_probs.copy()
    errors[offsets[:-1] + gold] -= 1.0  # p - one_hot(gold), summed directly: no cancellation near 0
    return ragged_sum(errors * errors, offsets)


def per_question_nll(choice_probs, offsets, gold) -> np.ndarray:
    """(n,) negative log-probability of the gold choice, clipped at ``NLL_EPS``."""
    choice_probs, offsets, gold = _check_ragged(choice_probs, offsets, gold)
    return -np.log(np.maximum(choice_probs[offsets[:-1] + gold], NLL_EPS))


def multiclass_brier(choice_probs, offsets, gold) -> float:
    """Mean multiclass Brier score over questions (module docstring); 0 is perfect, 2 is the worst.

    Args:
        choice_probs: (total,) probabilities, each question's slice summing to 1.
        offsets: (n+1,) question boundaries.
        gold: (n,) gold index within each question.
    """
    return float(per_question_brier(choice_probs, offsets, gold).mean())


def nll(choice_probs, offsets, gold) -> float:
    """Mean negative log-likelihood of the gold choice (nats), clipped per question at ``-log(NLL_EPS)``."""
    return float(per_question_nll(choice_probs, offsets, gold).mean())
