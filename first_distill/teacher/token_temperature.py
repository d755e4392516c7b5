"""Token-level teacher temperature: T fitted on the next-token distributions the store will hold.

The store keeps ``softmax(z / T)`` over the whole vocabulary at every completion position. Fitting T on
lm-eval's *choice* scores (summed log-likelihoods of whole answers, renormalised over the choices) matches
that only when every answer is one token; for answers of several tokens the summed scores grow with
length and pull T far up (SmolLM2 on ARC-Easy: T = 6.1, at which its top-5 tokens hold 0.13% of the mass).
The token-level fit asks the question FIRST's store needs answered directly: which T makes the teacher's
next-token probabilities of the gold answer tokens calibrated,

    T* = argmin_T  (1/N) sum_i [ logsumexp(z_i / T) - z_i[y_i] / T ]

over the N gold completion tokens of the validation questions (z_i: the teacher's logits predicting gold
token y_i). With beta = 1 / T the objective is convex (a log-partition function minus a linear term); its
derivative ``mean_i(E_{softmax(beta z_i)}[z_i] - z_i[y_i])`` increases with beta, so its root on log beta is
the unique minimum. This is the choice-level fit of ``first_eval.calibrators.temperature`` with the vocabulary
as the choices; only the derivative differs (full-vocabulary rows, chunked in torch), and the root is found by
the same solver (``solve_nll_slope``: brentq, the at-bound check). ECE here is the top-1 *token* ECE
(confidence of the argmax token against whether it is the gold token), before and after, the latter
cross-fitted over questions, in folds drawn by ``first_eval``'s ``assign_folds`` (a question counts as right
when every one of its answer tokens is the teacher's top token at T = 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from first_eval.errors import InputError

T_MIN, T_MAX = 0.01, 100.0
CHUNK_ROWS = 256


@dataclass(frozen=True)
class TokenTemperatureFit:
    """The fitted T and its evidence (nll per token, top-1 token ECE before/after, positions used)."""

    temperature: float
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    n_positions: int
    n_questions: int
    at_bound: str | None = None
    fold_temperatures: list[float] = field(default_factory=list)


def _chunks(n: int) -> Sequence[slice]:
    return [slice(start, min(n, start + CHUNK_ROWS)) for start in range(0, n, CHUNK_ROWS)]


def token_nll(logits: Any, gold: Any, temperature: float) -> float:
    """Mean of ``-log softmax(logits / T)[gold]`` over rows. logits (N, V) float, gold (N,) int64."""
    import torch

    total = 0.0
    for rows in _chunks(len(gold)):
        scaled = logits[rows].double() / temperature
        total += float((torch.logsumexp(scaled, dim=-1) - scaled.gather(-1, gold[rows, None])[:, 0]).sum())
    return total / len(gold)


def _nll_slope(logits: Any, gold: Any, beta: float) -> float:
    """d/d beta of the mean NLL at beta = 1 / T: mean(E_p[z] - z[gold]), p = softmax(beta z)."""
    import torch

    total = 0.0
    for rows in _chunks(len(gold)):
        z = logits[rows].double()  # float64: the slope is a small difference of large sums
        p = torch.softmax(beta * z, dim=-1)
        total += float(((p * z).sum(-1) - z.gather(-1, gold[rows, None])[:, 0]).sum())
    return total / len(gold)


def fit_token_temperature_value(logits: Any, gold: Any) -> tuple[float, str | None]:
    """The NLL-optimal T in [T_MIN, T_MAX] (first_eval's ``solve_nll_slope`` on log beta); second value:
    ``"low"``/``"high"`` at a bound."""
    from first_eval.calibrators import solve_nll_slope

    temperature, at_bound = solve_nll_slope(lambda log_beta: _nll_slope(logits, gold, math.exp(log_beta)), T_MIN, T_MAX)
    return temperature, {"min": "low", "max": "high"}.get(at_bound)


def _top1(logits: Any, gold: Any, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the top token's probability at T (float64) and whether it is the gold token."""
    import torch

    confidences, correct = [], []
    for rows in _chunks(len(gold)):
        top, arg = torch.softmax(logits[rows].float() / temperature, dim=-1).max(dim=-1)
        confidences.append(top.double().numpy())
        correct.append((arg == gold[rows]).numpy())
    return np.concatenate(confidences), np.concatenate(correct)


def top1_token_ece(logits: Any, gold: Any, temperature: float, n_bins: int = 15) -> float:
    """Equal-width top-1 ECE of the next-token distributions at T."""
    from first_eval.metrics import ece

    return float(ece(*_top1(logits, gold, temperature), n_bins=n_bins))


def fit_token_temperature(logits: Any, gold: Any, question_of_row: np.ndarray, n_folds: int = 5,
                          seed: int = 0, n_bins: int = 15) -> TokenTemperatureFit:
    """Fit T on all rows; ECE after T cross-fitted: each question's rows scaled by a T fit without that question.

    logits (N, V) float32 CPU tensor; gold (N,) int64 tensor; question_of_row (N,) the question each row belongs to.
    """
    import torch

    from first_eval.calibrators import assign_folds
    from first_eval.metrics import ece

    n = len(gold)
    if n < 2:
        raise InputError(f"--temperature-level token: {n} gold answer token(s) to fit on; need at least 2")
    temperature, at_bound = fit_token_temperature_value(logits, gold)
    confidences_before, correct_before = _top1(logits, gold, 1.0)
    questions, question_index = np.unique(question_of_row, return_inverse=True)
    folds = min(n_folds, len(questions))
    # a question is right when its teacher reproduces every answer token greedily (top-1 at T = 1)
    question_right = np.bincount(question_index, weights=~correct_before.astype(bool), minlength=len(questions)) == 0
    fold_of_question = (assign_folds(question_right, folds, seed)[0] if folds >= 2 else
                        np.zeros(len(questions), dtype=np.int64))
    fold_of_row = fold_of_question[question_index]
    fold_temperatures, confidences, correct = [], [], []
    for fold in range(folds):
        held = torch.from_numpy(np.flatnonzero(fold_of_row == fold))
        kept = torch.from_numpy(np.flatnonzero(fold_of_row != fold))
        fold_t = fit_token_temperature_value(logits[kept], gold[kept])[0] if len(kept) >= 2 else temperature
        fold_temperatures.append(fold_t)
        fold_confidences, fold_correct = _top1(logits[held], gold[held], fold_t)
        confidences.append(fold_confidences)
        correct.append(fold_correct)
    ece_after = float(ece(np.concatenate(confidences), np.concatenate(correct), n_bins=n_bins))
    return TokenTemperatureFit(
        temperature=temperature, nll_before=token_nll(logits, gold, 1.0), nll_after=token_nll(logits, gold, temperature),
        ece_before=float(ece(confidences_before, correct_before, n_bins=n_bins)), ece_after=ece_after, n_positions=int(n),
        n_questions=int(len(questions)), at_bound=at_bound, fold_temperatures=[float(t) for t in fold_temperatures])


def gold_token_logits(model: Any, examples: Sequence[Any], batch_size: int, device: str,
                      max_positions: int = 50_000) -> tuple[Any, Any, np.ndarray]:
    """The teacher's logits at every gold completion token of ``examples`` (TokenizedExample, in order).

    Returns logits (N, V) float32 on CPU, gold ids (N,) int64, and the example index of each row (N,).
    """
    import torch

    from first_distill.teacher.forward import collate_teacher_batch, completion_logits

    usable = [i for i, e in enumerate(examples) if e.n_completion > 0]
    total = sum(examples[i].n_completion for i in usable)
    if total > max_positions:
        raise InputError(f"--temperature-level token: {total} answer tokens in the calibration questions (more than "
                         f"{max_positions}); pass --calibration-limit N")
    pad_id = int(getattr(model.config, "pad_token_id", None) or 0)
    rows, golds, owners = [], [], []
    with torch.inference_mode():
        for start in range(0, len(usable), batch_size):
            indices = usable[start:start + batch_size]
            batch = collate_teacher_batch(examples, indices, pad_id, device)
            logits = completion_logits(model, batch)  # (B, m, V)
            rows.append(logits[batch.keep].float().cpu())
            for index in indices:
                example = examples[index]
                golds.append(torch.from_numpy(np.asarray(example.input_ids[-example.n_completion:], dtype=np.int64)))
                owners.append(np.full(example.n_completion, index))
    return torch.cat(rows), torch.cat(golds), np.concatenate(owners)
