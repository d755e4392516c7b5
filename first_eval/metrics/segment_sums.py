"""Sums over contiguous segments of positions for a block of bootstrap resamples at once (the resample engine's kernels).

With positions cut into S segments ``[bounds[q], bounds[q+1])`` and per-position coefficients ``C`` (n, m),

    sums[q, r, j] = sum_{p in segment q} W[r, p] C[p, j]        (W: (B, n) resample counts)

is one small matrix product per segment, ``W[:, segment] @ C[segment]`` ((B, len) x (len, m)). Every binned
quantity of the resample engine is a sum of such segment sums: a calibration bin, or a cell of the smooth-ECE
grid, is a run of consecutive ranked positions (confidences ascend). Compared with one (B, n) x (n, bins) product
plus a sparse product for the grid, this touches each weight once for a handful of columns and needs no
transposed copy of W; with a few hundred segments the Python loop costs ~1 ms per block.

``PrefixSums`` gives the other kernel: one resample's running totals ``sum_{j<p} w_j`` at fixed positions.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

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
        return self.bind(weights)()

    def bind(self, weights: np.ndarray) -> Callable[[], np.ndarray]:
        """``lambda: self(weights)`` for a ``weights`` buffer refilled between calls: the views of every product are
        made once, which saves ~25% of the loop (a Python loop of small products that keep the GIL)."""
        out = np.empty((self.n_segments, len(weights), self.coefficients.shape[1]), dtype=np.float32)
        bounds = self.bounds.tolist()
        products = [(weights[:, start:stop], self.coefficients[start:stop], out[q])
                    for q, (start, stop) in enumerate(pairwise(bounds))]

        def sums() -> np.ndarray:
            for segment_weights, coefficients, segment_out in products:
                np.matmul(segment_weights, coefficients, out=segment_out)
            return out.astype(np.float64)

        return sums


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


class PrefixSums:
    """Prefix sums ``S[p] = sum_{j<p} w_j`` (p = 0..n) of a row of counts, read at fixed positions, and coverage cuts.

    Faster than ``np.cumsum`` (whose loop is sequential) and exact: the row is cut into chunks of ``CHUNK``
    positions, one product ``(chunks, CHUNK) @ U`` with the upper triangular ones matrix ``U`` gives the running sum
    within every chunk (one BLAS call), and the running total of the chunks before each chunk is added to it. The
    counts are integers and every partial sum is an integer <= n, so float32 is exact for n below
    ``FLOAT32_EXACT_BELOW`` = 2^24 whatever the order of summation (float64 above). An instance keeps its scratch
    arrays, which stay in cache from row to row: one instance per thread.

    Args:
        n: positions per row.
        positions: (P,) positions in 0..n where ``S`` is read.
    """

    CHUNK = 16
    FLOAT32_EXACT_BELOW = 2**24  # integers up to 2^24 are exact in float32

    def __init__(self, n: int, positions: np.ndarray) -> None:
        self.dtype = np.float32 if n < self.FLOAT32_EXACT_BELOW else np.float64
        self.n_chunks = -(-n // self.CHUNK)
        self.width = self.n_chunks * self.CHUNK
        self.positions = np.asarray(positions, dtype=np.intp)
        self._upper = np.triu(np.ones((self.CHUNK, self.CHUNK), dtype=self.dtype))  # U[j, k] = 1 for j <= k
        self._prefix = np.zeros(self.width + 1, dtype=self.dtype)  # S[0] = 0 stays; S[p + 1] sums w_0..w_p
        self._before_chunk = np.zeros(self.n_chunks, dtype=self.dtype)  # sum over the chunks before each chunk
        self._at = np.empty(len(self.positions), dtype=self.dtype)

    def __call__(self, weights: np.ndarray, floors: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Write S at ``positions`` to ``out`` (P,) int64; return the cuts: for each floor, the largest p with
        ``S[p] <= floor`` and S there, both (C,) int64.

        Args:
            weights: (width,) counts in ``dtype``, zero past position n - 1.
            floors: (C,) integers in [0, n), in ``dtype``.
        """
        running = self._prefix[1:].reshape(self.n_chunks, self.CHUNK)
        np.dot(weights.reshape(self.n_chunks, self.CHUNK), self._upper, out=running)  # sums within each chunk
        np.cumsum(running[:-1, -1], out=self._before_chunk[1:])
        running += self._before_chunk[:, None]
        np.take(self._prefix, self.positions, out=self._at, mode="clip")  # in range: no bounds check
        out[...] = self._at
        cut = np.searchsorted(self._prefix, floors, side="right") - 1  # past n, S stays at n > every floor
        return cut, self._prefix[cut].astype(np.int64)
