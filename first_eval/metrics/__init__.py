"""Calibration and selective-prediction metrics for multiple-choice answers (pure numpy).

Entry point: ``compute_metrics(probs) -> MetricSet`` (point estimates + bootstrap intervals). The single
metrics are plain functions of arrays: ``confidences`` (n,) = probability of the chosen answer,
``correct`` (n,) = chosen answer is gold; the proper scores take the ragged ``(choice_probs, offsets, gold)``.

Where each metric lives: ``binning`` (bins, reliability bins), ``ece`` (ECE, MCE, RMSCE), ``debiased``
(Kumar et al.), ``smooth_ece`` (Błasiok & Nakkiran), ``proper_scores`` (Brier, NLL), ``auroc``,
``selective`` (risk-coverage, AURC, selective accuracy), ``ranking`` (the confidence order and tie
groups those two share), ``bootstrap`` (resamples, percentile intervals), ``resampled`` (all metrics on
many resamples at once), ``metric_set`` (the result type and ``compute_metrics``).

The functions ``ece``, ``auroc`` and ``smooth_ece`` share their module's name, so
``from first_eval.metrics import ece`` gives the function; import the module as
``first_eval.metrics.ece`` via ``from first_eval.metrics.ece import ...``.
"""

from first_eval.metrics.auroc import auroc
from first_eval.metrics.binning import (
    ReliabilityBins,
    equal_mass_bin_indices,
    equal_mass_upper_edges,
    equal_width_bin_indices,
    equal_width_edges,
    reliability_bins,
)
from first_eval.metrics.bootstrap import bootstrap_values, percentile_interval
from first_eval.metrics.debiased import debiased_calibration_error
from first_eval.metrics.ece import (
    CalibrationErrors,
    ece,
    ece_equal_mass,
    equal_mass_calibration_errors,
    equal_width_calibration_errors,
    mce,
    rmsce,
)
from first_eval.metrics.metric_set import DEFAULT_COVERAGES, Estimate, MetricSet, compute_metrics
from first_eval.metrics.proper_scores import multiclass_brier, nll, per_question_brier, per_question_nll
from first_eval.metrics.selective import RiskCoverageCurve, aurc, risk_coverage_curve, selective_accuracy
from first_eval.metrics.smooth_ece import SmoothEce, fit_smooth_ece, smooth_ece, smooth_ece_at

__all__ = [
    "CalibrationErrors", "DEFAULT_COVERAGES", "Estimate", "MetricSet", "ReliabilityBins", "RiskCoverageCurve",
    "SmoothEce", "aurc", "auroc", "bootstrap_values", "compute_metrics", "debiased_calibration_error", "ece",
    "ece_equal_mass", "equal_mass_bin_indices", "equal_mass_upper_edges", "equal_mass_calibration_errors",
    "equal_width_bin_indices", "equal_width_calibration_errors", "equal_width_edges", "fit_smooth_ece", "mce",
    "multiclass_brier", "nll", "per_question_brier", "per_question_nll", "percentile_interval", "reliability_bins",
    "risk_coverage_curve", "rmsce", "selective_accuracy", "smooth_ece", "smooth_ece_at",
]
