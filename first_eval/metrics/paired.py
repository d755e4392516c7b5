"""Differences between two models' metrics with bootstrap intervals: paired (same questions) or unpaired.

Paired bootstrap (Efron & Tibshirani 1993, ch. 16; Koehn 2004, "Statistical Significance Tests for Machine
Translation Evaluation"): model A and the baseline B answered the same ``n`` questions, row ``i`` of both
being the same question. Resample ``r`` draws ``n`` question indices with replacement (``bootstrap.py``'s
draws, counts ``w_r`` (n,)); BOTH models are scored on those same resampled questions and differenced,

    delta_r = m(A; w_r) - m(B; w_r),

and the interval is the percentile interval of ``delta_r``. Questions that are hard for both models move both
metrics together, so the paired interval is narrower than two independent intervals combined, and for two
identical models every ``delta_r`` is exactly 0: the interval is [0, 0].

Each metric as a function of the counts ``w`` (``sum w = n``), with ``c_i`` the correctness of the chosen
answer and ``p_i`` its probability:

    accuracy, mean confidence, Brier, NLL:  sum_i w_i x_i / n   (the difference: sum_i w_i (x_A,i - x_B,i) / n)
    ECE:  sum_b (n_b / n) sqrt(max(g_b^2 - v_b, 0))   over equal-width bins b (a question keeps its bin when drawn
          again), with n_b = sum_{i in b} w_i, g_b = sum_{i in b} w_i (p_i - c_i) / n_b the bin's gap, and
          v_b = a_b (1 - a_b) / (n_b - 1) (a_b the bin's accuracy; 0 for a single question) the unbiased estimate
          of the gap's sampling variance given the confidences, so g_b^2 - v_b estimates the squared true gap
          without bias (Kumar, Liang & Ma 2019 debias the L2 error the same way).
    calibrated ECE:  the same of the cross-fitted temperature-scaled confidences. The per-fold temperatures are
          held fixed, not refit on each resample, so the interval leaves out the fit's own variance.

Why the noise correction: the plug-in ECE ``sum_b (n_b / n) |g_b|`` cannot fall below its noise, about
``sqrt(a (1 - a) / n_b)`` per bin, so a calibrated model's ECE is inflated, by more the more its questions
spread over bins. Two perfectly calibrated models of different sharpness then differ in plug-in ECE by their
noise alone: on 400 questions the paired percentile interval of the plug-in difference excluded 0 in 3 of 4
repetitions (a claim of better calibration where there is none). The corrected ECE removes most of that bias;
what is left shrinks differences toward 0 (``sqrt`` of an unbiased square under-estimates a large gap; a
zero gap clipped at 0 stays slightly positive), so the interval errs on the side of "no difference".
``Delta.plugin`` keeps the plain difference of the plug-in ECEs the tables show.

Intervals: the mean metrics use the percentile interval of ``delta_r``. For the ECE metrics a resample adds
noise of its own (a question drawn twice is not a second observation), so their resamples are biased against
the sample the way the sample is against the population; their percentile interval is shifted to centre the
resamples' median on the estimate (the bias-corrected-percentile idea of Efron 1981, as a shift).

Unpaired (different questions): each model is resampled independently (its own draws, its own ``n``), and
``unpaired_from_intervals`` combines two reported intervals by a normal approximation when no per-question
data exist at all. Both are wider than the paired interval and say so (``paired=False``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from first_eval.metrics.binning import equal_width_bin_indices
from first_eval.metrics.bootstrap import block_rows, check_bootstrap_arguments, percentile_interval, resample_draw_blocks

# Metrics that are means of one value per question (the difference is linear in the counts).
MEAN_METRICS = ("accuracy", "mean_confidence", "brier", "nll")
BINNED_METRICS = ("ece", "ece_calibrated")
PAIRED_METRICS = ("accuracy", "mean_confidence", "ece", "ece_calibrated", "brier", "nll")
# Differences this small are float rounding (e.g. two temperature-scaled copies of one model), never evidence.
NUMERICAL_ZERO = 1e-12
# The baseline's resamples in an unpaired comparison draw from the seed plus this, independent of the model's.
UNPAIRED_SEED_OFFSET = 0x5EED


@dataclass(frozen=True)
class QuestionOutcomes:
    """One model's per-question values, all (n,), in the order shared with the model it is paired with.

    Attributes:
        confidences: probability of the chosen answer.
        correct: the chosen answer is gold.
        brier, nll: per-question proper scores (``proper_scores.per_question_brier`` / ``per_question_nll``).
        calibrated_confidences: the chosen answer's probability after cross-fitted temperature scaling, or None.
        n_bins: equal-width bins of this model's ECE.
    """

    confidences: np.ndarray
    correct: np.ndarray
    brier: np.ndarray
    nll: np.ndarray
    calibrated_confidences: np.ndarray | None = None
    n_bins: int = 15

    def __post_init__(self) -> None:
        n = len(self.confidences)
        if n < 1:
            raise ValueError("no questions")
        for name in ("correct", "brier", "nll", "calibrated_confidences"):
            values = getattr(self, name)
            if values is not None and len(values) != n:
                raise ValueError(f"{name} has {len(values)} values for {n} questions")

    @property
    def n(self) -> int:
        return len(self.confidences)

    def subset(self, index: np.ndarray) -> "QuestionOutcomes":
        calibrated = None if self.calibrated_confidences is None else self.calibrated_confidences[index]
        return QuestionOutcomes(self.confidences[index], self.correct[index], self.brier[index], self.nll[index],
                                calibrated, self.n_bins)

    def mean_columns(self) -> np.ndarray:
        """(n, 4) the per-question values of ``MEAN_METRICS``, in that order."""
        return np.column_stack([self.correct.astype(np.float64), self.confidences, self.brier, self.nll])

    def binned(self) -> dict[str, "_Bins"]:
        correct = self.correct.astype(np.float64)
        layouts = {"ece": _Bins(self.confidences, correct, self.n_bins)}
        if self.calibrated_confidences is not None:
            layouts["ece_calibrated"] = _Bins(self.calibrated_confidences, correct, self.n_bins)
        return layouts


@dataclass(frozen=True)
class Delta:
    """``delta = metric(model) - metric(baseline)`` and its interval over ``n`` questions (paired: the common
    questions; unpaired: the model's own). ``plugin``: for the ECE metrics, the plain difference of plug-in ECEs."""

    delta: float | None
    ci: tuple[float | None, float | None]
    paired: bool
    n: int
    plugin: float | None = None

    @property
    def excludes_zero(self) -> bool:
        low, high = self.ci
        return low is not None and high is not None and (low > NUMERICAL_ZERO or high < -NUMERICAL_ZERO)

    def to_dict(self) -> dict[str, Any]:
        out = {"delta": self.delta, "ci": list(self.ci), "paired": self.paired, "n": self.n,
               "excludes_zero": self.excludes_zero}
        if self.plugin is not None:
            out["delta_plugin"] = self.plugin
        return out


class _Bins:
    """One confidence vector's equal-width bins: the questions sorted by bin and each filled bin's first position."""

    def __init__(self, confidences: np.ndarray, correct: np.ndarray, n_bins: int) -> None:
        bins = equal_width_bin_indices(np.asarray(confidences, dtype=np.float64), n_bins)
        self.order = np.argsort(bins, kind="stable")
        self.starts = np.flatnonzero(np.r_[True, np.diff(bins[self.order]) != 0])
        self.gaps = (confidences - correct)[self.order]  # (n,) p_i - c_i in bin order
        self.correct = correct[self.order]

    def sums(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, filled bins) weight, gap sum and correct sum of each resample's bins (summed in order: deterministic)."""
        weighted = counts[:, self.order]  # (B, n)
        return (np.add.reduceat(weighted, self.starts, axis=1), np.add.reduceat(weighted * self.gaps, self.starts, axis=1),
                np.add.reduceat(weighted * self.correct, self.starts, axis=1))

    def corrected_ece(self, counts: np.ndarray) -> np.ndarray:
        """(B,) noise-corrected ECE (module docstring) of each resample from its (B, n) counts."""
        weight, gap_sums, right = self.sums(counts)
        safe = np.where(weight > 0, weight, 1.0)
        gap, accuracy = gap_sums / safe, right / safe
        noise = np.where(weight > 1, accuracy * (1.0 - accuracy) / np.maximum(weight - 1.0, 1.0), 0.0)
        return (weight * np.sqrt(np.maximum(gap * gap - noise, 0.0))).sum(axis=1) / counts.sum(axis=1)

    def plugin_ece(self, counts: np.ndarray) -> np.ndarray:
        weight, gap_sums, _ = self.sums(counts)
        return np.abs(gap_sums).sum(axis=1) / counts.sum(axis=1)


def _counts(draws: np.ndarray, n: int) -> np.ndarray:
    """(B, n) float64 multiplicity of each question in each resample, from (B, n) draws."""
    rows = draws.shape[0]
    flat = (draws + (np.arange(rows, dtype=np.int64) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)


def _evaluator(outcomes: QuestionOutcomes):
    """counts (B, n) -> {metric: (B,)} of one model's metrics (the mean metrics and the noise-corrected ECEs)."""
    columns, layouts = outcomes.mean_columns(), outcomes.binned()

    def evaluate(counts: np.ndarray) -> dict[str, np.ndarray]:
        means = (counts @ columns) / counts.sum(axis=1, keepdims=True)  # (B, 4)
        values = {name: means[:, j] for j, name in enumerate(MEAN_METRICS)}
        values.update({name: layout.corrected_ece(counts) for name, layout in layouts.items()})
        return values

    return evaluate, layouts


def paired_deltas(model: QuestionOutcomes, baseline: QuestionOutcomes, n_resamples: int = 1000, seed: int = 0,
                  confidence_level: float = 0.95) -> dict[str, Delta]:
    """Paired bootstrap differences ``model - baseline`` of every metric both define (module docstring).

    Args:
        model, baseline: the same n questions in the same order.
        n_resamples: bootstrap resamples; 0 gives the point differences with no interval.
        seed: resample seed (``bootstrap.resample_draw_blocks``): the same seed draws the same questions.
        confidence_level: interval coverage, in (0, 1).

    Returns:
        {metric: Delta} for ``PAIRED_METRICS`` (``ece_calibrated`` only when both hold calibrated confidences).
    """
    check_bootstrap_arguments(n_resamples, confidence_level)
    if model.n != baseline.n:
        raise ValueError(f"paired metrics need the same questions; got {model.n} and {baseline.n}")
    n = model.n
    # The mean metrics' difference is one weighted sum of per-question differences: exact zeros for identical models.
    mean_differences = model.mean_columns() - baseline.mean_columns()  # (n, 4)
    layouts_model, layouts_base = model.binned(), baseline.binned()
    binned = [name for name in BINNED_METRICS if name in layouts_model and name in layouts_base]

    def evaluate(counts: np.ndarray) -> dict[str, np.ndarray]:
        means = (counts @ mean_differences) / counts.sum(axis=1, keepdims=True)  # (B, 4)
        values = {name: means[:, j] for j, name in enumerate(MEAN_METRICS)}
        for name in binned:
            values[name] = layouts_model[name].corrected_ece(counts) - layouts_base[name].corrected_ece(counts)
        return values

    ones = np.ones((1, n))
    points = {name: float(values[0]) for name, values in evaluate(ones).items()}
    plugins = {name: float(layouts_model[name].plugin_ece(ones)[0] - layouts_base[name].plugin_ece(ones)[0])
               for name in binned}
    resampled: dict[str, list[np.ndarray]] = {name: [] for name in points}
    if n_resamples:
        for draws in resample_draw_blocks(n, n_resamples, seed):
            for name, values in evaluate(_counts(draws, n)).items():
                resampled[name].append(values)
    return {name: Delta(points[name], _interval(name, points[name], resampled[name], confidence_level), True, n,
                        plugins.get(name))
            for name in PAIRED_METRICS if name in points}


def unpaired_deltas(model: QuestionOutcomes, baseline: QuestionOutcomes, n_resamples: int = 1000, seed: int = 0,
                    confidence_level: float = 0.95) -> dict[str, Delta]:
    """Differences ``model - baseline`` over two different question sets, each resampled on its own.

    The model's resample ``r`` uses ``seed``'s draws over its own ``n``, the baseline's those of
    ``seed + UNPAIRED_SEED_OFFSET``, so the two are independent. ``Delta.n`` is the model's question count.
    """
    check_bootstrap_arguments(n_resamples, confidence_level)
    evaluate_model, layouts_model = _evaluator(model)
    evaluate_base, layouts_base = _evaluator(baseline)
    point_model, point_base = evaluate_model(np.ones((1, model.n))), evaluate_base(np.ones((1, baseline.n)))
    names = [name for name in PAIRED_METRICS if name in point_model and name in point_base]
    resampled: dict[str, list[np.ndarray]] = {name: [] for name in names}
    if n_resamples:
        rows = block_rows(max(model.n, baseline.n), n_resamples)
        blocks = zip(resample_draw_blocks(model.n, n_resamples, seed, rows),
                     resample_draw_blocks(baseline.n, n_resamples, (seed + UNPAIRED_SEED_OFFSET) % 2**32, rows))
        for draws_model, draws_base in blocks:
            values_model = evaluate_model(_counts(draws_model, model.n))
            values_base = evaluate_base(_counts(draws_base, baseline.n))
            for name in names:
                resampled[name].append(values_model[name] - values_base[name])
    out = {}
    for name in names:
        point = float(point_model[name][0] - point_base[name][0])
        plugin = None
        if name in BINNED_METRICS:
            plugin = float(layouts_model[name].plugin_ece(np.ones((1, model.n)))[0]
                           - layouts_base[name].plugin_ece(np.ones((1, baseline.n)))[0])
        out[name] = Delta(point, _interval(name, point, resampled[name], confidence_level), False, model.n, plugin)
    return out


def unpaired_from_intervals(value: float | None, reference: float | None,
                            value_ci: Any, reference_ci: Any, n: int) -> Delta:
    """``value - reference`` with an interval from the two models' own intervals (no per-question data).

    Normal approximation: each interval's half-width is ``z * se`` (both at the same level), and independent
    errors add in quadrature, ``delta +- z * sqrt(se_1^2 + se_2^2)``. Percentile intervals of a skewed statistic
    (the ECE) are not symmetric, so this is rough; no interval when either one is missing.
    """
    if value is None or reference is None:
        return Delta(None, (None, None), False, n)
    delta = float(value) - float(reference)
    if not (_full_interval(value_ci) and _full_interval(reference_ci)):
        return Delta(delta, (None, None), False, n)
    margin = float(np.hypot((value_ci[1] - value_ci[0]) / 2, (reference_ci[1] - reference_ci[0]) / 2))
    return Delta(delta, (delta - margin, delta + margin), False, n)


def _full_interval(interval: Any) -> bool:
    return (isinstance(interval, (list, tuple)) and len(interval) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in interval))


def _interval(name: str, point: float, blocks: list[np.ndarray], confidence_level: float) -> tuple[float | None, float | None]:
    """Percentile interval of the resampled differences; for the ECE metrics shifted to centre their median on ``point``."""
    if not blocks:
        return None, None
    values = np.concatenate(blocks)
    low, high = percentile_interval(values, confidence_level)
    if low is None or name not in BINNED_METRICS:
        return low, high
    shift = point - float(np.median(values[np.isfinite(values)]))
    return low + shift, high + shift
