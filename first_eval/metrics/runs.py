"""Maximal runs of flagged positions (the wrong answers, in confidence order) and the flagged weight before a
position, for many resamples at once (the bootstrap engine's view of "how many wrong answers so far")."""

from __future__ import annotations

import numpy as np

from first_eval.metrics.segment_sums import sums_of_first


def positions_in(starts: np.ndarray, ends: np.ndarray, n: int) -> np.ndarray:
    """(n,) bool: position lies in one of the disjoint ranges [starts, ends)."""
    edges = np.zeros(n + 1, dtype=np.int64)
    np.add.at(edges, starts, 1)
    np.add.at(edges, ends, -1)
    return np.cumsum(edges)[:n] > 0


class Runs:
    """Maximal runs of consecutive flagged positions: run r covers ``starts[r] <= p < ends[r]``."""

    def __init__(self, flags: np.ndarray) -> None:
        change = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
        self.starts = np.flatnonzero(change == 1)
        self.ends = np.flatnonzero(change == -1)
        self.boundaries = np.stack([self.starts, self.ends], axis=1).ravel()  # start_0, end_0, start_1, ...
        # For a position p: runs ending at or before p, and the run containing p - 1 (else -1).
        self._runs_done = np.searchsorted(self.ends, np.arange(len(flags) + 1), side="right")
        # A run is open at p when start < p < end: positions start..p-1 are before p, the rest are not.
        positions = np.arange(len(flags) + 1)
        run = np.searchsorted(self.starts, positions - 1, side="right") - 1  # last run starting before p
        open_at = (run >= 0) & (positions < self.ends[np.maximum(run, 0)]) if len(self.starts) else run < -1
        self._open_run = np.where(open_at, run, -1)

    def wrong_before(self, positions, prefix_at, run_low, run_weights) -> np.ndarray:
        """Flagged weight before each position, for every resample.

        Args:
            positions: (P,) positions shared by all resamples, or (B, P) per resample.
            prefix_at: (B, P) prefix sums ``S_before`` at those positions.
            run_low, run_weights: (B, R) ``S_before`` at each run's start, each run's weight.

        Returns:
            (B, P): weight of the runs ended by p, plus the part before p of a run still open at p.
        """
        shared = np.ndim(positions) == 1
        positions = np.broadcast_to(positions, prefix_at.shape)
        if run_low.shape[1] == 0:
            return np.zeros(prefix_at.shape, dtype=np.int64)
        done = self._runs_done[positions]
        whole = sums_of_first(run_weights, done[:1] if shared else done)
        run = self._open_run[positions]
        partial = np.where(run >= 0, prefix_at - np.take_along_axis(run_low, np.maximum(run, 0), axis=1), 0)
        return whole + partial
