"""Top-label recalibration: change only the predicted choice's confidence, keep a full distribution.

Platt scaling and isotonic regression are binary calibrators: they learn ``c -> P(correct | c)``
from the top-label confidence ``c`` (the softmax probability of the predicted choice at T=1).
To report multiclass Brier score and NLL we still need a probability for every choice, so a
calibrated confidence ``c'`` is turned back into a distribution over the question's choices:

- the prediction stays the original argmax of the scores (ties -> lowest index);
- the predicted choice gets ``c'``, clipped to ``[CONFIDENCE_EPS, 1 - CONFIDENCE_EPS]`` so the NLL of
  a confidently wrong or confidently right calibrator stays finite;
- the other choices share ``1 - c'`` in proportion to their T=1 probabilities. Their shares are
  computed as a softmax over the non-predicted scores alone, so they stay well defined (and sum to 1)
  even when those probabilities underflow to 0 at T=1; no uniform fall-back is ever needed.

Because ``c'`` can fall below another choice's share, ``choice_probs``' argmax may differ from
``predictions``; ``ChoiceProbs.predictions`` is what the metrics use (Guo et al. 2017, section 2).
"""

from __future__ import annotations

import numpy as np

from first_eval.scores import ChoiceProbs, ChoiceScores, ragged_argmax, ragged_max, ragged_sum

# Calibrated confidences are clipped to [eps, 1 - eps]: -log(eps) ~ 13.8 nats caps one question's NLL.
CONFIDENCE_EPS = 1e-6


def top_label_logits(scores: ChoiceScores) -> np.ndarray:
    """(n,) ``log(c / (1 - c))`` of the top-label confidence ``c`` at T=1, computed without rounding c.

    ``c / (1 - c) = exp(s_top) / sum_{j != top} exp(s_j)``, so the logit is
    ``s_top - logsumexp(s_others)``: finite even when ``c`` rounds to exactly 1.0 in float64.
    """
    top_positions, _, other_log_norm = _split_top_and_others(scores)
    return scores.choice_scores[top_positions] - other_log_norm


def top_label_confidences(scores: ChoiceScores) -> np.ndarray:
    """(n,) softmax probability of the predicted choice at T=1 (``ChoiceProbs.confidences``)."""
    return scores.probabilities(1.0).confidences


def top_label_probs(scores: ChoiceScores, calibrated_confidences: np.ndarray) -> ChoiceProbs:
    """Distribution with the predicted choice at ``calibrated_confidences`` (see the module docstring).

    Args:
        scores: the questions, (total,) scores with (n+1,) offsets.
        calibrated_confidences: (n,) calibrated ``P(correct)`` of each question's predicted choice.

    Returns:
        ChoiceProbs whose ``predictions`` are the argmax of ``scores`` and whose ``confidences`` are the
        clipped ``calibrated_confidences``.
    """
    confidences = np.clip(np.asarray(calibrated_confidences, dtype=np.float64), CONFIDENCE_EPS, 1.0 - CONFIDENCE_EPS)
    if confidences.shape != (scores.n_questions,):
        raise ValueError(f"expected {scores.n_questions} calibrated confidences; got shape {confidences.shape}")
    top_positions, other_scores, other_log_norm = _split_top_and_others(scores)
    counts = scores.n_choices
    # share of each non-predicted choice among the non-predicted mass: softmax over the others only
    # (0 at the predicted choice, whose score is -inf in other_scores)
    other_shares = np.exp(other_scores - np.repeat(other_log_norm, counts))  # (total,)
    choice_probs = np.repeat(1.0 - confidences, counts) * other_shares
    choice_probs[top_positions] = confidences
    predictions = top_positions - scores.offsets[:-1]
    return ChoiceProbs(choice_probs, scores.offsets, scores.gold, predictions)


def _split_top_and_others(scores: ChoiceScores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n,) flat position of each predicted choice; (total,) scores with the predicted ones set to -inf;
    (n,) logsumexp of each question's other (non-predicted) scores."""
    offsets = scores.offsets
    counts = scores.n_choices
    top_positions = offsets[:-1] + ragged_argmax(scores.choice_scores, offsets)
    others = scores.choice_scores.copy()
    others[top_positions] = -np.inf  # every question has >= 2 choices, so the others' max is finite
    others_max = ragged_max(others, offsets)
    other_log_norm = others_max + np.log(ragged_sum(np.exp(others - np.repeat(others_max, counts)), offsets))
    return top_positions, others, other_log_norm
