"""Sums over contiguous segments of positions for a block of bootstrap resamples at once (the resample engine's kernels).

With positions cut into S segments ``[bounds[q], bounds[q+1])`` and per-position coefficients ``C`` (n, m),

    sums[q, r, j] = sum_{p in segment q} W[r, p] C[p, j]        (W: (B, n) resample counts)

is one small matrix product per segment, ``W[:, segment] @ C[segment]`` ((B, len) x (len, m)). Every binned
quantity of the resample engine is a sum of such segment sums: a calibration bin, or a cell of the smooth-ECE
grid, is a run of consecutive ranked positions (confidences ascend). Compared with one (B, n) x (n, bins) product
plus a sparse product for the grid, this touches each weight once for a handful of columns and needs no
transposed copy of W; with a few hundred segments the Python loop costs ~1 ms per block.
"""

from __future__ import annotations

import numpy as np


class SegmentSums:
    """``sums = SegmentSums(bounds, coefficients)(weights)``: (S, B, m) float64, see the module docstring.

    Args:
        bounds: (S + 1,) strictly increasing positions from 0 to n.
        coefficients: (n, m) per-position coefficients (computed in float32, like the weights).
    """

    def __init__(self, bounds: np.ndarray, coefficients: np.ndarray) -> None:
        bounds = np.asarray(bounds, dtype=np.int64)
        if bounds[0] != 0 or bounds[-1] != len(coefficients) or np.any(np.diff(bounds) <= 0):
            raise ValueError("segment bounds must rise strictly from 0 to the number of positions")
        self.bounds = bounds
        self.coefficients = np.ascontiguousarray(coefficients, dtype=np.float32)

    @property
    def n_segments(self) -> int:
        return len(self.bounds) - 1

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        """weights (B, n) float32 -> (S, B, m) float64 segment sums."""
        out = np.empty((self.n_segments, len(weights), self.coefficients.shape[1]), dtype=np.float32)
        coefficients, bounds = self.coefficients, self.bounds
        for q in range(self.n_segments):
            start, stop = bounds[q], bounds[q + 1]
            np.matmul(weights[:, start:stop], coefficients[start:stop], out=out[q])
        return out.astype(np.float64)


def sums_of_first(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(B, P) ``values[b, :counts[b, p]].sum()`` for values (B, R); counts (1, P) (the same for every row) or (B, P).

    Sums between the distinct counts (``np.add.reduceat``) then a running total over those few: no cumulative sum
    over all R columns of every row.
    """
    if values.shape[1] == 0:
        return np.zeros((len(values), counts.shape[1]), dtype=values.dtype)
    rows = range(len(values)) if len(counts) > 1 else [slice(None)]
    out = np.empty((len(values), counts.shape[1]), dtype=values.dtype)
    for row in rows:
        wanted = counts[row] if len(counts) > 1 else counts[0]
        cuts = np.unique(np.concatenate([[0], wanted, [values.shape[1]]]))  # strictly rising, 0 .. R
        between = np.add.reduceat(values[row], cuts[:-1], axis=-1)  # sums over [cuts[i], cuts[i+1])
        before = np.concatenate([np.zeros(between.shape[:-1] + (1,), dtype=values.dtype),
                                 np.cumsum(between, axis=-1)], axis=-1)  # sums of the first cuts[i]
        out[row] = before[..., np.searchsorted(cuts, wanted)]
    return out
