"""Top-label binned calibration errors: ECE (equal-width and equal-mass bins), MCE, RMS calibration error.

With bins ``b`` holding ``n_b`` of the ``n`` questions, ``conf_b`` their mean confidence and ``acc_b``
their share correct (Naeini et al. 2015; Guo et al. 2017, "On Calibration of Modern Neural Networks"):

    ECE   = sum_b (n_b / n) |acc_b - conf_b|
    MCE   = max_{b : n_b > 0} |acc_b - conf_b|
    RMSCE = sqrt( sum_b (n_b / n) (acc_b - conf_b)^2 )

so ECE <= RMSCE <= MCE (power means of the same per-bin gaps). RMSCE is torchmetrics' ``norm="l2"``
and the plug-in (not debiased) L2 error of Kumar et al. 2019. Bins are described in ``binning.py``.

All functions take ``confidences`` (n,) in [0, 1] (the probability of the predicted choice) and
``correct`` (n,) bool or 0/1 (prediction == gold).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from first_eval.metrics._validation import check_confidences_and_correct
from first_eval.metrics.binning import (
    BinSums,
    bin_sums,
    equal_mass_bin_indices,
    equal_mass_upper_edges,
    equal_width_bin_sums,
)


@dataclass(frozen=True)
class CalibrationErrors:
    """ECE, MCE and RMSCE of one binning; floats, or (B,) arrays when computed for B resamples at once."""

    ece: np.ndarray | float
    mce: np.ndarray | float
    rmsce: np.ndarray | float


def calibration_errors_from_gaps(counts: np.ndarray, gap_sums: np.ndarray) -> CalibrationErrors:
    """ECE, MCE, RMSCE from per-bin totals.

    Args:
        counts: (..., M) weight (number of questions) per bin.
        gap_sums: (..., M) per-bin sum of ``confidence - correct``, so ``gap_sums / counts = conf_b - acc_b``.

    Returns:
        CalibrationErrors of shape ``(...)``. Empty bins are skipped.
    """
    total = counts.sum(axis=-1)
    filled = counts > 0
    safe_counts = np.where(filled, counts, 1.0)
    bin_gaps = np.abs(gap_sums) / safe_counts  # |conf_b - acc_b|, 0 for empty bins
    ece = np.abs(gap_sums).sum(axis=-1) / total
    rmsce = np.sqrt((bin_gaps * np.abs(gap_sums)).sum(axis=-1) / total)
    mce = np.where(filled, bin_gaps, -np.inf).max(axis=-1)
    if np.ndim(ece) == 0:
        return CalibrationErrors(float(ece), float(mce), float(rmsce))
    return CalibrationErrors(ece, mce, rmsce)


def calibration_errors_from_bin_sums(sums: BinSums) -> CalibrationErrors:
    return calibration_errors_from_gaps(sums.counts, sums.confidence_sums - sums.correct_sums)


def equal_width_calibration_errors(confidences, correct, n_bins: int = 15) -> CalibrationErrors:
    """ECE, MCE and RMSCE over ``n_bins`` equal-width bins in one pass over the data."""
    confidences, correct = check_confidences_and_correct(confidences, correct)
    return calibration_errors_from_bin_sums(equal_width_bin_sums(confidences, correct, n_bins))


def equal_mass_calibration_errors(confidences, correct, n_bins: int = 15) -> CalibrationErrors:
    """ECE, MCE and RMSCE over (up to) ``n_bins`` equal-mass bins (Kumar et al. 2019's boundaries)."""
    confidences, correct = check_confidences_and_correct(confidences, correct)
    upper_edges = equal_mass_upper_edges(confidences, n_bins)
    indices = equal_mass_bin_indices(confidences, upper_edges)
    return calibration_errors_from_bin_sums(bin_sums(indices, confidences, correct, len(upper_edges)))


def ece(confidences, correct, n_bins: int = 15) -> float:
    """Expected calibration error over ``n_bins`` equal-width bins (formula in the module docstring).

    ``ece([0.9, 0.6], [1, 0], n_bins=10) == 0.5 * 0.1 + 0.5 * 0.6 == 0.35``.
    """
    return equal_width_calibration_errors(confidences, correct, n_bins).ece


def ece_equal_mass(confidences, correct, n_bins: int = 15) -> float:
    """ECE over equal-mass bins; equals ``calibration.get_ece_em(confidences, correct, num_bins=n_bins)``."""
    return equal_mass_calibration_errors(confidences, correct, n_bins).ece


def mce(confidences, correct, n_bins: int = 15) -> float:
    """Maximum calibration error: the largest ``|acc_b - conf_b|`` over non-empty equal-width bins."""
    return equal_width_calibration_errors(confidences, correct, n_bins).mce


def rmsce(confidences, correct, n_bins: int = 15) -> float:
    """Root-mean-square calibration error over equal-width bins (torchmetrics ``norm="l2"``)."""
    return equal_width_calibration_errors(confidences, correct, n_bins).rmsce
