"""Debiased L2 calibration error (Kumar, Liang & Ma 2019, "Verified Uncertainty Calibration", NeurIPS).

The plug-in squared calibration error over bins over-estimates the truth: even a perfectly calibrated
model shows bin gaps of size ~ sqrt(acc_b (1 - acc_b) / n_b) from sampling noise alone. Kumar et al.
subtract that noise per bin. What we compute, exactly:

    bins:      equal-mass bins over the confidences, ``n_bins`` = 15 by default (``binning.py``;
               the boundaries of ``calibration.utils.get_equal_bins``)
    per bin:   e_b = (conf_b - acc_b)^2 - acc_b (1 - acc_b) / (n_b - 1)   if n_b >= 2, else 0
    estimate:  sqrt( max(0, sum_b (n_b / n) e_b) )

That is the L2 error (a square root, on the same scale as RMSCE, not squared), and equals
``calibration.get_calibration_error(confidences, correct, p=2, debias=True)`` from the
``uncertainty-calibration`` package whenever that function treats the data as continuous (it switches
to one bin per distinct value when there are fewer than n/4 distinct confidences; we never do) --
i.e. ``calibration.lower_bound_scaling_ce(confidences, correct, p=2, debias=True, num_bins=n_bins)``.
"""

from __future__ import annotations

import numpy as np

from first_eval.metrics._validation import check_confidences_and_correct
from first_eval.metrics.binning import BinSums, bin_sums, equal_mass_bin_indices, equal_mass_upper_edges


def debiased_l2_from_bin_sums(sums: BinSums) -> np.ndarray | float:
    """The estimate above from per-bin totals; ``sums`` fields (..., M) -> (...)."""
    counts = sums.counts
    filled = counts >= 2
    safe_counts = np.where(filled, counts, 2.0)
    accuracy = sums.correct_sums / safe_counts
    mean_confidence = sums.confidence_sums / safe_counts
    per_bin = (mean_confidence - accuracy) ** 2 - accuracy * (1.0 - accuracy) / (safe_counts - 1.0)
    squared = (np.where(filled, per_bin, 0.0) * counts).sum(axis=-1) / counts.sum(axis=-1)
    result = np.sqrt(np.maximum(squared, 0.0))
    return float(result) if np.ndim(result) == 0 else result


def debiased_calibration_error(confidences, correct, n_bins: int = 15) -> float:
    """Debiased L2 calibration error over (up to) ``n_bins`` equal-mass bins (see module docstring).

    Args:
        confidences: (n,) probability of the predicted choice, in [0, 1].
        correct: (n,) bool or 0/1.
        n_bins: number of equal-mass bins (fewer remain when ties straddle a split).
    """
    confidences, correct = check_confidences_and_correct(confidences, correct)
    upper_edges = equal_mass_upper_edges(confidences, n_bins)
    indices = equal_mass_bin_indices(confidences, upper_edges)
    return debiased_l2_from_bin_sums(bin_sums(indices, confidences, correct, len(upper_edges)))
