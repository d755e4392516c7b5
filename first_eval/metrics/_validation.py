"""Checks shared by every metric: confidences in [0, 1], correctness as 0/1, matching lengths.

Errors quote the first bad value and its index, so a caller can find it in their data.
"""

from __future__ import annotations

import numpy as np


def check_confidences_and_correct(confidences, correct) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(confidences float64 (n,), correct bool (n,))`` or raise ValueError.

    ``correct`` may be bool or numeric 0/1. Needs at least one question.
    """
    confidences = np.asarray(confidences, dtype=np.float64)
    correct = np.asarray(correct)
    if confidences.ndim != 1:
        raise ValueError(f"confidences must be a 1-d array; got shape {confidences.shape}")
    if correct.shape != confidences.shape:
        raise ValueError(f"correct has shape {correct.shape} but confidences has shape {confidences.shape}")
    if len(confidences) == 0:
        raise ValueError("no questions: confidences is empty")
    # min/max are single fast passes; only on failure do we look for the offending index.
    low, high = confidences.min(), confidences.max()
    if not (low >= 0.0 and high <= 1.0):  # also catches NaN
        bad = int(np.flatnonzero(~((confidences >= 0.0) & (confidences <= 1.0)))[0])
        raise ValueError(f"confidences must lie in [0, 1]; got {confidences[bad].item()!r} at index {bad}")
    if correct.dtype != np.bool_:
        is_binary = (correct == 0) | (correct == 1)
        if not is_binary.all():
            bad = int(np.flatnonzero(~is_binary)[0])
            raise ValueError(f"correct must be 0/1 or bool; got {correct[bad].item()!r} at index {bad}")
        correct = correct.astype(bool)
    return confidences, correct


def check_n_bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1; got {n_bins!r}")
    return int(n_bins)


def check_coverage(coverage: float) -> float:
    coverage = float(coverage)
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1]; got {coverage!r}")
    return coverage
