"""The metric set of one task: every metric's point estimate with its bootstrap interval, in one call.

``compute_metrics(probs)`` is the entry point the audit and the report use; ``MetricSet.to_dict()`` is
the task's block of ``metrics.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from first_eval.metrics.auroc import auroc_from_ranking
from first_eval.metrics.binning import (
    ReliabilityBins,
    bin_sums,
    equal_mass_bin_indices,
    equal_mass_upper_edges_of_sorted,
    reliability_bins,
)
from first_eval.metrics.bootstrap import check_bootstrap_arguments, percentile_interval
from first_eval.metrics.debiased import debiased_l2_from_bin_sums
from first_eval.metrics.ece import calibration_errors_from_bin_sums, equal_width_calibration_errors
from first_eval.metrics.proper_scores import per_question_brier, per_question_nll
from first_eval.metrics.resampled import SCALAR_METRICS, ResampleEngine
from first_eval.metrics._validation import check_confidences_and_correct, check_coverage, check_n_bins
from first_eval.metrics.ranking import rank_by_confidence
from first_eval.metrics.selective import aurc_from_ranking, selective_accuracies_from_ranking
from first_eval.metrics.smooth_ece import fit_smooth_ece
from first_eval.scores import ChoiceProbs

DEFAULT_COVERAGES = (0.5, 0.8)


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its percentile bootstrap interval; None where undefined or not computed."""

    value: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class MetricSet:
    """All metrics of one set of answers (top-label: the chosen answer's probability vs. its correctness).

    Every interval comes from the same ``n_bootstrap`` resamples; ``smooth_ece``'s holds the kernel
    bandwidth at the full sample's ``smooth_ece_bandwidth`` and equal-mass bins keep the full sample's
    boundaries (see ``resampled.py``). ``selective_accuracy`` maps a coverage q to the accuracy on the
    q share of questions with the highest confidence.
    """

    n: int
    n_bins: int
    n_bootstrap: int
    confidence_level: float
    accuracy: Estimate
    ece: Estimate
    ece_equal_mass: Estimate
    mce: Estimate
    rmsce: Estimate
    ece_debiased: Estimate
    smooth_ece: Estimate
    brier: Estimate
    nll: Estimate
    auroc: Estimate
    aurc: Estimate
    selective_accuracy: dict[float, Estimate]
    mean_confidence: Estimate
    reliability: ReliabilityBins
    smooth_ece_bandwidth: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: each metric's value under its name and ``[low, high]`` under ``<name>_ci``."""
        out: dict[str, Any] = {
            "n": self.n, "n_bins": self.n_bins, "n_bootstrap": self.n_bootstrap,
            "confidence_level": float(self.confidence_level),
        }
        for name in ("accuracy", "mean_confidence", "ece", "ece_equal_mass", "ece_debiased", "smooth_ece", "mce",
                     "rmsce", "brier", "nll", "auroc", "aurc"):
            estimate: Estimate = getattr(self, name)
            out[name] = _plain(estimate.value)
            out[f"{name}_ci"] = [_plain(estimate.ci_low), _plain(estimate.ci_high)]
        out["selective_accuracy"] = {_coverage_key(q): _plain(e.value) for q, e in self.selective_accuracy.items()}
        out["selective_accuracy_ci"] = {
            _coverage_key(q): [_plain(e.ci_low), _plain(e.ci_high)] for q, e in self.selective_accuracy.items()
        }
        out["smooth_ece_bandwidth"] = _plain(self.smooth_ece_bandwidth)
        out["reliability"] = self.reliability.to_dict()
        return out


def compute_metrics(
    probs: ChoiceProbs,
    n_bins: int = 15,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence_level: float = 0.95,
    coverages: Sequence[float] = DEFAULT_COVERAGES,
) -> MetricSet:
    """Point estimates and seeded percentile-bootstrap intervals of every metric.

    Args:
        probs: per-question choice probabilities, gold and predicted choice.
        n_bins: equal-width bins for ECE/MCE/RMSCE and the reliability diagram; also the number of
            equal-mass bins for the equal-mass and debiased errors.
        n_bootstrap: resamples for the intervals; 0 gives no intervals (ci_low/ci_high None).
        seed: bootstrap seed; the same seed and data give the same intervals.
        confidence_level: interval coverage, in (0, 1).
        coverages: coverages (each in (0, 1]) for the selective accuracies.
    """
    n_bins = check_n_bins(n_bins)
    check_bootstrap_arguments(n_bootstrap, confidence_level)
    coverages = tuple(check_coverage(q) for q in coverages)
    confidences, correct = check_confidences_and_correct(probs.confidences, probs.correct)
    brier = per_question_brier(probs.choice_probs, probs.offsets, probs.gold)
    nll = per_question_nll(probs.choice_probs, probs.offsets, probs.gold)

    ranking = rank_by_confidence(confidences, correct)  # shared by AUROC, AURC, selective and the bootstrap
    width = equal_width_calibration_errors(confidences, correct, n_bins)
    sorted_confidences = ranking.confidences
    mass_edges = equal_mass_upper_edges_of_sorted(sorted_confidences, n_bins)
    mass = bin_sums(equal_mass_bin_indices(sorted_confidences, mass_edges), sorted_confidences, ranking.correct,
                    len(mass_edges))
    smooth = fit_smooth_ece(confidences, correct)
    points: dict[str, float | None] = {
        "accuracy": float(correct.mean()),
        "mean_confidence": float(confidences.mean()),
        "ece": width.ece, "mce": width.mce, "rmsce": width.rmsce,
        "ece_equal_mass": calibration_errors_from_bin_sums(mass).ece,
        "ece_debiased": debiased_l2_from_bin_sums(mass),
        "brier": float(brier.mean()), "nll": float(nll.mean()),
        "auroc": auroc_from_ranking(ranking),
        "aurc": aurc_from_ranking(ranking),
        "smooth_ece": smooth.value,
    }
    selective_points = [float(v) for v in selective_accuracies_from_ranking(ranking, coverages)]

    intervals: dict[str, tuple[float | None, float | None]] = {name: (None, None) for name in points}
    selective_intervals = [(None, None)] * len(coverages)
    if n_bootstrap > 0:
        engine = ResampleEngine(ranking, brier, nll, n_bins, coverages, smooth.bandwidth)
        resampled = engine.run(n_bootstrap, seed)
        for name in SCALAR_METRICS:
            intervals[name] = percentile_interval(resampled.scalars[name], confidence_level)
        intervals["smooth_ece"] = percentile_interval(resampled.smooth_ece, confidence_level)
        selective_intervals = [percentile_interval(resampled.selective_accuracy[:, j], confidence_level)
                               for j in range(len(coverages))]
    if points["auroc"] is None:
        intervals["auroc"] = (None, None)  # one class in the data: every resample is undefined too

    def estimate(name: str) -> Estimate:
        return Estimate(points[name], *intervals[name])

    return MetricSet(
        n=len(confidences), n_bins=n_bins, n_bootstrap=n_bootstrap, confidence_level=confidence_level,
        accuracy=estimate("accuracy"), ece=estimate("ece"), ece_equal_mass=estimate("ece_equal_mass"),
        mce=estimate("mce"), rmsce=estimate("rmsce"), ece_debiased=estimate("ece_debiased"),
        smooth_ece=estimate("smooth_ece"), brier=estimate("brier"), nll=estimate("nll"), auroc=estimate("auroc"),
        aurc=estimate("aurc"),
        selective_accuracy={q: Estimate(v, *ci) for q, v, ci in zip(coverages, selective_points, selective_intervals)},
        mean_confidence=estimate("mean_confidence"),
        reliability=reliability_bins(confidences, correct, n_bins),
        smooth_ece_bandwidth=smooth.bandwidth,
    )


def _plain(value: float | None) -> float | None:
    """Python float, or None for None/nan/inf (JSON has no nan)."""
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _coverage_key(coverage: float) -> str:
    return f"{coverage:g}"
