"""Confidence bins: equal-width and equal-mass bin assignment, per-bin sums, reliability bins.

Equal-width (``M`` bins): edges ``np.linspace(0, 1, M + 1)``; bin ``b`` holds ``edges[b] <= c < edges[b+1]``
and the LAST bin is closed, so a confidence of exactly 1.0 lands in bin ``M - 1`` (as ``np.histogram``
and ``sklearn.calibration.calibration_curve`` do; torchmetrics' ``bucketize(..., right=True) - 1``
puts 1.0 in an extra bin of its own, Lightning-AI/torchmetrics issue #3510).

Equal-mass (Kumar, Liang & Ma 2019, ``calibration.utils.get_equal_bins``): sort the confidences, split
them into ``min(M, n)`` runs of (as near as possible) equal length as ``np.array_split`` does, and put a
boundary halfway between the last value of a run and the first of the next. Bin ``b`` holds
``upper[b-1] < c <= upper[b]`` where ``upper`` are the distinct boundaries plus 1.0. Equal confidences
always share a bin (a run split inside a tie goes to the lower bin), so fewer than ``M`` bins remain
when ties straddle a split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from first_eval.metrics._validation import check_confidences_and_correct, check_n_bins

CHUNK = 1 << 16  # questions per chunk in equal_width_bin_sums: the chunk's temporaries stay in L2 cache


def equal_width_edges(n_bins: int) -> np.ndarray:
    """(M+1,) edges ``0, 1/M, ..., 1`` exactly as ``np.linspace(0, 1, M + 1)``."""
    return np.linspace(0.0, 1.0, check_n_bins(n_bins) + 1)


def equal_width_bin_indices(confidences: np.ndarray, n_bins: int) -> np.ndarray:
    """(n,) intp bin index in ``0..M-1`` of each confidence (assumed already in [0, 1]).

    Same result as ``np.searchsorted(edges[1:-1], confidences, side="right")`` but ~5x faster:
    ``floor(c * M)`` can only disagree with the float edges when ``c * M`` rounds to within a few ulps
    of an integer, so just those entries are re-checked against the edges (``np.histogram``'s idea).
    """
    n_bins = check_n_bins(n_bins)
    scaled = confidences * n_bins
    indices = scaled.astype(np.intp)
    np.minimum(indices, n_bins - 1, out=indices)  # confidence 1.0 -> the last, closed bin
    fraction = scaled - indices
    tolerance = max(1e-9, 64 * n_bins * np.finfo(np.float64).eps)
    near_edge = np.flatnonzero((fraction < tolerance) | (fraction > 1 - tolerance))
    if len(near_edge):
        edges = equal_width_edges(n_bins)
        upper = edges[1:].copy()
        upper[-1] = np.inf  # nothing moves past the last bin
        values, fixed = confidences[near_edge], indices[near_edge]
        fixed -= values < edges[fixed]
        fixed += values >= upper[fixed]
        indices[near_edge] = fixed
    return indices


def equal_mass_upper_edges(confidences: np.ndarray, n_bins: int) -> np.ndarray:
    """(M',) increasing upper bin boundaries, the last one 1.0, with ``M' <= min(M, n)``.

    Exactly ``calibration.utils.get_equal_bins`` (Kumar et al. 2019): midpoints between ``np.array_split``
    runs of the sorted confidences, de-duplicated.
    """
    return equal_mass_upper_edges_of_sorted(np.sort(confidences), n_bins)


def equal_mass_upper_edges_of_sorted(sorted_confidences: np.ndarray, n_bins: int) -> np.ndarray:
    """``equal_mass_upper_edges`` for confidences already sorted ascending (saves the sort)."""
    n = len(sorted_confidences)
    n_bins = min(check_n_bins(n_bins), n)
    run_lengths = np.full(n_bins, n // n_bins)
    run_lengths[: n % n_bins] += 1
    run_ends = np.cumsum(run_lengths)[:-1]  # index of the first value of runs 1..M-1
    midpoints = (sorted_confidences[run_ends - 1] + sorted_confidences[run_ends]) / 2.0
    return np.unique(np.append(midpoints, 1.0))


def equal_mass_bin_indices(confidences: np.ndarray, upper_edges: np.ndarray) -> np.ndarray:
    """(n,) intp index of the equal-mass bin ``upper[b-1] < c <= upper[b]`` of each confidence."""
    return np.searchsorted(upper_edges, confidences, side="left")


@dataclass(frozen=True)
class BinSums:
    """Per-bin totals, the sufficient statistics of every binned calibration error.

    Attributes (all (M,) float64; the leading axes may also hold resamples, (B, M)):
        counts: questions (or resample weight) in the bin.
        confidence_sums: sum of confidences in the bin.
        correct_sums: number of correct answers in the bin.
    """

    counts: np.ndarray
    confidence_sums: np.ndarray
    correct_sums: np.ndarray

    @property
    def total(self) -> np.ndarray:
        return self.counts.sum(axis=-1)


def bin_sums(bin_indices: np.ndarray, confidences: np.ndarray, correct: np.ndarray, n_bins: int) -> BinSums:
    """Sum counts, confidences and correct answers per bin with two ``np.bincount`` passes.

    ``bin_indices`` (n,) in ``0..n_bins-1``; ``correct`` (n,) bool.
    """
    # One unweighted bincount over (bin, correct) pairs gives both counts and correct counts.
    pair_counts = np.bincount(bin_indices * 2 + correct, minlength=2 * n_bins).reshape(n_bins, 2)
    confidence_sums = np.bincount(bin_indices, weights=confidences, minlength=n_bins)
    counts = pair_counts.sum(axis=1).astype(np.float64)
    return BinSums(counts, confidence_sums, pair_counts[:, 1].astype(np.float64))


def equal_width_bin_sums(confidences: np.ndarray, correct: np.ndarray, n_bins: int) -> BinSums:
    """``bin_sums`` over equal-width bins, computed in cache-sized chunks (2-3x faster on 1M questions
    than whole-array passes, which are limited by memory bandwidth)."""
    n_bins = check_n_bins(n_bins)
    pair_counts = np.zeros(2 * n_bins, dtype=np.int64)
    confidence_sums = np.zeros(n_bins)
    for start in range(0, len(confidences), CHUNK):
        chunk_confidences, chunk_correct = confidences[start : start + CHUNK], correct[start : start + CHUNK]
        indices = equal_width_bin_indices(chunk_confidences, n_bins)
        pair_counts += np.bincount(indices * 2 + chunk_correct, minlength=2 * n_bins)
        confidence_sums += np.bincount(indices, weights=chunk_confidences, minlength=n_bins)
    pair_counts = pair_counts.reshape(n_bins, 2)
    return BinSums(pair_counts.sum(axis=1).astype(np.float64), confidence_sums, pair_counts[:, 1].astype(np.float64))


@dataclass(frozen=True)
class ReliabilityBins:
    """Equal-width bins of the point estimate, for the reliability diagram.

    Attributes:
        edges: (M+1,) bin edges ``linspace(0, 1, M + 1)``.
        counts: (M,) questions per bin.
        mean_confidence: (M,) mean confidence per bin, nan for empty bins.
        accuracy: (M,) share correct per bin, nan for empty bins.
    """

    edges: np.ndarray
    counts: np.ndarray
    mean_confidence: np.ndarray
    accuracy: np.ndarray

    def to_dict(self) -> dict:
        """JSON-ready lists; empty bins give None."""

        def listed(values: np.ndarray) -> list:
            return [None if not np.isfinite(v) else float(v) for v in values]

        return {
            "edges": [float(e) for e in self.edges],
            "counts": [int(c) for c in self.counts],
            "mean_confidence": listed(self.mean_confidence),
            "accuracy": listed(self.accuracy),
        }


def reliability_bins(confidences, correct, n_bins: int = 15) -> ReliabilityBins:
    """Per-bin count, mean confidence and accuracy over equal-width bins (see module docstring)."""
    confidences, correct = check_confidences_and_correct(confidences, correct)
    sums = equal_width_bin_sums(confidences, correct, n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.where(sums.counts > 0, sums.confidence_sums / sums.counts, np.nan)
        accuracy = np.where(sums.counts > 0, sums.correct_sums / sums.counts, np.nan)
    return ReliabilityBins(equal_width_edges(n_bins), sums.counts.astype(np.int64), mean_confidence, accuracy)
