"""Every metric of the set on many bootstrap resamples at once (the engine behind the CIs).

A resample is a vector ``w`` (n,) of multinomial counts (how often each question was drawn, summing to
``n``). Each metric is rewritten as a function of a few weighted sums, so a resample costs one pass over its
counts (their float32 copy, their prefix sums, a few table look-ups) and its row of a few small matrix products,
instead of a computation of every metric:

- Questions are first put in ``ConfidenceRanking`` order (ascending confidence, correct first within
  ties). Every bin is then a contiguous run of positions, so per-bin counts are differences of the
  prefix sums ``S_before(p) = sum_{j<p} w_j``, and per-bin wrong counts are the same over the runs of
  consecutive wrong answers.
- Per-bin confidence sums, Brier, NLL and the smooth-ECE grid values come from float32 products
  ``W[:, segment] @ F[segment]`` over the segments between consecutive bin and grid-cell boundaries
  (``segment_sums.py``); ``F``'s columns are centred (confidence minus its bin's mean, score minus its mean)
  so float32 rounding stays ~1e-7 of the spread, and the centres are added back exactly.
- AUROC (Mann-Whitney U with ties at 1/2): with ``S_i`` the prefix sum through position i, summing
  ``w_i S_i`` over a run of wrong answers telescopes, ``sum_run w_i S_i = (S_end^2 - S_start^2 +
  sum_run w_i^2) / 2`` (S_start, S_end: the prefix sums just before and at the end of the run), giving
  ``U = P N + N^2/2 - 1/2 sum_runs (S_end^2 - S_start^2) + 1/2 sum_ties P_g N_g``
  for ``P``/``N`` right/wrong weight and ``P_g``/``N_g`` those of tie groups holding both.
- AURC: ``n AURC = N H_n - sum_runs [Phi(n - S_start) - Phi(n - S_end)]`` with ``H`` the harmonic numbers
  and ``Phi(x) = sum_{j<x} H_j`` (a lookup table); tie groups holding both spread their errors evenly
  (as in ``selective.py``).
- Selective accuracy: binary search for the coverage cut in the prefix sums.
- The prefix sums come from ``segment_sums.PrefixSums`` (a triangular product per 16 positions, exact).
- Smooth ECE: grid values are per-cell sums of ``w`` times the interpolation weights; the smoothing and mesh
  interpolation then act as one precomputed matrix (``SmoothEceAtBandwidth``), with the kernel
  bandwidth FIXED at the full sample's self-consistent ``sigma*`` (re-running the bisection would cost
  11 smoothings per resample).
- Equal-mass bin boundaries are fixed from the full sample (a resample's quantiles would move them).

With all-ones counts every value equals the plain functions' point estimate (tested), and each
resample's values equal the plain functions applied to the resampled questions (tested; float32 sums
give ~1e-7 differences).

Blocks of resamples are evaluated by one thread per core (``run``). The values do not depend on the threads:
arithmetic on counts is in integers or exact floats, and each float sum is one call on one whole block, whose
shape is fixed by ``bootstrap.block_rows`` (BLAS results can depend on a product's shape).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from first_eval.metrics.binning import (
    BinSums,
    equal_mass_bin_indices,
    equal_mass_upper_edges_of_sorted,
    equal_width_bin_indices,
)
from first_eval.metrics.bootstrap import (
    block_rows,
    resample_counts,
    resample_draw_blocks,
)
from first_eval.metrics.debiased import debiased_l2_from_bin_sums
from first_eval.metrics.ece import calibration_errors_from_gaps
from first_eval.metrics.ranking import ConfidenceRanking
from first_eval.metrics.runs import Runs, positions_in
from first_eval.metrics.segment_sums import PrefixSums, SegmentSums
from first_eval.metrics.smooth_ece import SmoothEceAtBandwidth, grid_assignment

SCALAR_METRICS = (
    "accuracy", "mean_confidence", "ece", "ece_equal_mass", "mce", "rmsce", "ece_debiased",
    "brier", "nll", "auroc", "aurc",
)
# Threads evaluating blocks of resamples at once; more would wait on the one random stream and hold more memory.
MAX_WORKERS = 4


@dataclass(frozen=True)
class ResampledValues:
    """Metric values per resample: ``scalars[name]`` (R,), ``selective_accuracy`` (R, len(coverages)),
    ``smooth_ece`` (R,), empty when the engine has no smooth-ECE bandwidth."""

    scalars: dict[str, np.ndarray]
    selective_accuracy: np.ndarray
    smooth_ece: np.ndarray


class ResampleEngine:
    """Precomputed layout of one data set; ``evaluate`` maps resample counts to metric values.

    Args:
        ranking: the questions ranked by confidence (``rank_by_confidence``).
        brier, nll: (n,) per-question proper scores, in the original question order.
        n_bins: equal-width bins (and equal-mass bins before de-duplication).
        coverages: coverages of the selective accuracies, each in (0, 1].
        smooth_bandwidth: fixed kernel bandwidth for the smooth ECE, or None to skip it.
    """

    def __init__(self, ranking: ConfidenceRanking, brier, nll, n_bins: int, coverages,
                 smooth_bandwidth: float | None) -> None:
        self.n = n = ranking.n
        self.correct = ranking.correct
        self.coverages = np.asarray(coverages, dtype=np.float64)
        ranked = ranking.confidences

        # Bins are contiguous runs of ranked positions: bin b is [starts[b], starts[b+1]).
        width_bins = equal_width_bin_indices(ranked, n_bins)
        mass_bins = equal_mass_bin_indices(ranked, equal_mass_upper_edges_of_sorted(ranked, n_bins))
        self.n_width, self.n_mass = n_bins, int(mass_bins[-1]) + 1
        self.width_starts = np.searchsorted(width_bins, np.arange(self.n_width + 1))
        self.mass_starts = np.searchsorted(mass_bins, np.arange(self.n_mass + 1))
        self.width_centres = _bin_means(ranked, width_bins, self.n_width)
        self.mass_centres = _bin_means(ranked, mass_bins, self.n_mass)
        brier, nll = np.asarray(brier)[ranking.order], np.asarray(nll)[ranking.order]
        self.brier_mean, self.nll_mean = float(brier.mean()), float(nll.mean())
        self.smooth_bandwidth = smooth_bandwidth
        self._init_segments(ranking, width_bins, mass_bins, brier, nll)

        # Wrong answers come in runs of consecutive positions; per resample only the prefix sums at the
        # ends of the runs are needed (sums over a run telescope). Mixed tie groups hold right and wrong.
        mixed = ranking.mixed_groups
        self.mixed_start = ranking.group_starts[mixed]
        self.mixed_split = self.mixed_start + ranking.group_correct[mixed]  # first wrong answer of the group
        self.mixed_end = ranking.group_ends[mixed]
        self.mixed_of = np.full(n, -1, dtype=np.int64)
        self.mixed_of[positions_in(self.mixed_start, self.mixed_end, n)] = np.repeat(
            np.arange(len(mixed)), self.mixed_end - self.mixed_start)
        wrong = ~ranking.correct
        self.runs = Runs(wrong)
        # AURC spreads the errors of mixed groups evenly, so its runs leave those groups out.
        self.plain_runs = Runs(wrong & (self.mixed_of < 0)) if len(mixed) else self.runs

        # Positions p where every resample needs S_before(p) = sum_{j<p} w_j (and the wrong-only twin).
        self.probes = np.unique(np.concatenate(
            [self.width_starts, self.mass_starts, self.mixed_start, self.mixed_split, self.mixed_end]))
        # Each resample's prefix sums are read at these positions: run starts and ends interleaved, the same for the
        # AURC runs if they differ, then the probes.
        plain = self.plain_runs if self.plain_runs is not self.runs else Runs(np.zeros(0, dtype=bool))
        layout = [self.runs.boundaries, plain.boundaries, self.probes]
        self._gather_at = np.concatenate(layout)
        self._gather_splits = np.cumsum([len(part) for part in layout])[:-1]
        first_plain = 0 if self.plain_runs is self.runs else len(self.runs.boundaries)
        self._phi_columns = slice(first_plain, first_plain + len(self.plain_runs.boundaries))  # AURC's run ends
        harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n + 1))])
        self.harmonic_n = float(harmonic[n])
        self.phi = np.concatenate([[0.0], np.cumsum(harmonic[:n])])  # Phi(x) = sum_{j<x} H_j, x = 0..n
        self._phi_of_rest = self.phi[::-1].copy()  # Phi(n - s) looked up by s

    def _init_segments(self, ranking: ConfidenceRanking, width_bins, mass_bins, brier, nll) -> None:
        """Segments cut at every bin and smooth-ECE grid cell boundary, and the coefficients summed over them.

        Columns: brier and NLL (centred on their means), confidence minus its equal-width and its equal-mass bin's
        mean (centred, so float32 sums stay ~1e-7 of the spread; the centres are added back exactly), and with a
        smooth-ECE bandwidth the grid weights ``1 - frac``, ``frac`` and the same times the residual ``c - y``
        (``smooth_ece.round_to_grid``: question i puts ``1 - frac`` on grid point ``cell``, ``frac`` on ``cell + 1``).
        """
        n, ranked = ranking.n, ranking.confidences
        columns = [brier - self.brier_mean, nll - self.nll_mean, ranked - self.width_centres[width_bins],
                   ranked - self.mass_centres[mass_bins]]
        cuts = [self.width_starts, self.mass_starts, [0, n]]
        if self.smooth_bandwidth is not None:
            self._smooth_ece = SmoothEceAtBandwidth(self.smooth_bandwidth)
            cells, fractions = grid_assignment(ranked, self._smooth_ece.n_grid)
            residuals = ranked - ranking.correct
            columns += [1 - fractions, fractions, (1 - fractions) * residuals, fractions * residuals]
            cuts.append(np.flatnonzero(np.diff(cells)) + 1)
        bounds = np.unique(np.concatenate(cuts))
        self._segments = SegmentSums(bounds, np.stack(columns, axis=1))
        first = bounds[:-1]  # each segment lies in one bin of each kind and one grid cell
        self._width_of_segment = _one_hot(width_bins[first], self.n_width)  # (M, S)
        self._mass_of_segment = _one_hot(mass_bins[first], self.n_mass)
        if self.smooth_bandwidth is not None:
            cell_of_segment = cells[first]
            self._cell_starts = np.flatnonzero(np.diff(cell_of_segment, prepend=-1))  # first segment of each cell
            self._cells = cell_of_segment[self._cell_starts]  # the grid cells that hold questions, ascending

    def evaluate(self, counts: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Metrics for a block of resamples.

        Args:
            counts: (B, n) integer multiplicities in ranked order, each row summing to n.

        Returns:
            (scalars: name -> (B,), selective accuracy (B, C), smooth ECE (B,) or empty without a bandwidth).
        """
        counts = np.asarray(counts, dtype=np.int64)
        if counts.ndim != 2 or counts.shape[1] != self.n or (counts.sum(axis=1) != self.n).any():
            raise ValueError(f"counts must be (B, {self.n}) multiplicities summing to {self.n} per row")
        return self._evaluate(counts, _Workspace(self, len(counts)), len(counts))

    def _evaluate(self, count_rows: Iterable[np.ndarray], workspace: _Workspace,
                  n_rows: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """``evaluate`` for ``n_rows`` int64 count rows (a generator may make each row just before it is used)."""
        n = self.n
        # The one pass over each row, while it is in cache: its float32 copy for the segment sums, its prefix sums
        # read at the run ends and the probes, the coverage cuts, the AURC table read at the run ends and the run
        # weights and squares. Prefix sums are integers, so "prefix > m" is "prefix > floor(m)".
        prefix = workspace.prefix
        cut_floors = np.floor((1.0 - self.coverages) * n).astype(prefix.dtype)
        weights, gathered, phi_at_ends = (part[:n_rows] for part in workspace.blocks)
        cut_at = np.empty((n_rows, len(cut_floors)), dtype=np.intp)
        cut_before = np.empty((n_rows, len(cut_floors)), dtype=np.int64)
        n_ends = len(self.runs.boundaries)
        run_weights = np.empty((n_rows, n_ends // 2), dtype=np.int64)  # (B, R) wrong weight of each run
        run_squares = np.empty(n_rows, dtype=np.int64)  # sum_runs S_end^2 - S_start^2
        for row, counts in enumerate(count_rows):
            weights[row, :n] = counts
            row_weights = weights[row] if prefix.dtype == weights.dtype else weights[row].astype(prefix.dtype)
            cut_at[row], cut_before[row] = prefix(row_weights, cut_floors, out=gathered[row])
            # mode="clip" skips the bounds check (in range by construction)
            np.take(self._phi_of_rest, gathered[row, self._phi_columns], out=phi_at_ends[row], mode="clip")
            low, high = gathered[row, 0:n_ends:2], gathered[row, 1:n_ends:2]  # S_before at each run's start and end
            np.subtract(high, low, out=run_weights[row])
            run_squares[row] = np.dot(high, high) - np.dot(low, low)  # int64, exact (any wrap-around cancels)
        # (S, B, columns) segment sums; a whole block through the workspace's ready-made views
        segment_sums = workspace.segment_sums() if n_rows == workspace.rows else self._segments(weights[:, :n])
        feature_sums = np.concatenate([segment_sums[:, :, :2].sum(axis=0), (self._width_of_segment @ segment_sums[:, :, 2]).T,
                                       (self._mass_of_segment @ segment_sums[:, :, 3]).T], axis=1)  # (B, 2 + M + M')

        runs, _, probe_before = np.split(gathered, self._gather_splits, axis=1)
        run_low = runs[:, 0::2]
        run_squares = run_squares.astype(np.float64)
        # sum_runs Phi(n - S_start) - Phi(n - S_end): the look-ups at the interleaved starts and ends, signed sum
        phi_sums = phi_at_ends @ np.tile([1.0, -1.0], phi_at_ends.shape[1] // 2)
        probe_wrong_before = self.runs.wrong_before(self.probes, probe_before, run_low, run_weights)
        cut_wrong_before = self.runs.wrong_before(cut_at, cut_before, run_low, run_weights)
        probe_before, cut_before = probe_before.astype(np.float64), cut_before.astype(np.float64)

        scalars, selective = self._finish(feature_sums, run_squares, phi_sums, probe_before, probe_wrong_before,
                                          cut_at, cut_before, cut_wrong_before)
        smooth = np.empty(0)
        if self.smooth_bandwidth is not None:
            n_grid = self._smooth_ece.n_grid
            per_cell = np.add.reduceat(segment_sums[:, :, 4:], self._cell_starts, axis=0)  # (cells, B, 4)
            grids = np.zeros((2, n_grid, n_rows))  # weights and weights x residual on the grid
            grids[:, self._cells] += per_cell[:, :, 0::2].transpose(2, 0, 1)  # 1 - frac to the cell's left point
            grids[:, self._cells + 1] += per_cell[:, :, 1::2].transpose(2, 0, 1)  # frac to its right point
            smooth = self._smooth_ece(grids[0].T, grids[1].T)
        return scalars, selective, smooth

    def _finish(self, feature_sums, run_squares, phi_sums, probe_before, probe_wrong_before,
                cut_at, cut_before, cut_wrong_before):
        n = float(self.n)
        probe_right_before = probe_before - probe_wrong_before

        def at(positions):
            index = np.searchsorted(self.probes, positions)
            return probe_before[:, index], probe_right_before[:, index]

        def binned(starts, centres, first_column):
            before, right_before = at(starts)
            counts, correct = np.diff(before, axis=1), np.diff(right_before, axis=1)
            columns = feature_sums[:, first_column : first_column + len(centres)]
            return BinSums(counts, columns + centres * counts, correct)

        width = binned(self.width_starts, self.width_centres, 2)
        mass = binned(self.mass_starts, self.mass_centres, 2 + self.n_width)
        width_errors = calibration_errors_from_gaps(width.counts, width.confidence_sums - width.correct_sums)
        mass_errors = calibration_errors_from_gaps(mass.counts, mass.confidence_sums - mass.correct_sums)
        right_total = width.correct_sums.sum(axis=1)
        wrong_total = n - right_total

        start_before, start_right_before = at(self.mixed_start)
        split_before, _ = at(self.mixed_split)
        end_before, _ = at(self.mixed_end)
        mixed_right, mixed_wrong = split_before - start_before, end_before - split_before
        mixed_size = end_before - start_before

        # AUROC: U = P N + N^2/2 - 1/2 sum_runs (S_end^2 - S_start^2) counts the pairs (wrong i, right j)
        # with j ranked after i; pairs tied in confidence count half.
        pairs = right_total * wrong_total + wrong_total**2 / 2 - run_squares / 2
        pairs += 0.5 * (mixed_right * mixed_wrong).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            auroc = np.where(right_total * wrong_total > 0, pairs / (right_total * wrong_total), np.nan)
        # AURC: mixed groups spread their errors evenly over their positions.
        more_confident = (n - end_before).astype(np.int64)
        wrong_share = mixed_wrong / np.where(mixed_size > 0, mixed_size, 1)
        right_share = mixed_right / np.where(mixed_size > 0, mixed_size, 1)
        mixed_phi_step = self.phi[more_confident + mixed_size.astype(np.int64)] - self.phi[more_confident]
        mixed_phi = (wrong_share * mixed_phi_step).sum(axis=1)
        aurc = (wrong_total * self.harmonic_n - phi_sums - mixed_phi) / n

        # Selective accuracy: right answers among the bottom (1 - q) n copies, the straddler counted
        # fractionally (a straddling mixed tie group at its share of right answers).
        cut_masses = (1.0 - self.coverages) * n
        group = self.mixed_of[cut_at]  # (B, C), -1 outside mixed groups
        in_group = group >= 0
        rows = np.arange(len(cut_at))[:, None]
        safe_group = np.where(in_group, group, 0)
        if len(self.mixed_start):
            g_before = start_before[rows, safe_group]
            g_right_before = start_right_before[rows, safe_group]
            g_share = right_share[rows, safe_group]
        else:
            g_before = g_right_before = g_share = np.zeros(cut_at.shape)
        plain_right = (cut_before - cut_wrong_before) + (cut_masses - cut_before) * self.correct[cut_at]
        tied_right = g_right_before + (cut_masses - g_before) * g_share
        bottom_right = np.where(in_group, tied_right, plain_right)
        selective = (right_total[:, None] - bottom_right) / (self.coverages * n)

        scalars = {
            "accuracy": right_total / n,
            "mean_confidence": width.confidence_sums.sum(axis=1) / n,
            "ece": width_errors.ece, "mce": width_errors.mce, "rmsce": width_errors.rmsce,
            "ece_equal_mass": mass_errors.ece,
            "ece_debiased": np.asarray(debiased_l2_from_bin_sums(mass)),
            "brier": feature_sums[:, 0] / n + self.brier_mean,
            "nll": feature_sums[:, 1] / n + self.nll_mean,
            "auroc": auroc,
            "aurc": aurc,
        }
        return scalars, selective

    def run(self, n_resamples: int, seed: int) -> ResampledValues:
        """Draw ``n_resamples`` seeded resamples (``bootstrap.resample_draw_blocks``) and evaluate them all.

        Blocks are evaluated by up to ``MAX_WORKERS`` threads, one per core (numpy releases the GIL for the
        heavy steps). A worker draws its block under a lock, so the one random stream is consumed in block
        order, and a block's values are a fixed function of its draws: the results depend neither on timing
        nor on the number of workers. BLAS is held to one thread meanwhile (the workers fill the cores, and
        OpenBLAS threads spin while they wait).
        """
        from threadpoolctl import threadpool_limits

        # int32 draws are the same numbers as int64 ones (numpy draws both from its 32-bit stream) in half the memory.
        dtype = np.int32 if self.n <= np.iinfo(np.int32).max else np.int64
        blocks = enumerate(resample_draw_blocks(self.n, n_resamples, seed, dtype=dtype))
        stream = threading.Lock()
        evaluated: dict[int, tuple] = {}
        rows = block_rows(self.n, n_resamples)

        def work() -> None:
            workspace = _Workspace(self, rows)
            while True:
                with stream:
                    index, draws = next(blocks, (None, None))
                if draws is None:
                    return
                # Each row's counts are made just before the row is used, while they are in cache.
                evaluated[index] = self._evaluate((resample_counts(row, self.n) for row in draws), workspace, len(draws))

        n_workers = max(1, min(MAX_WORKERS, os.cpu_count() or 1, -(-n_resamples // rows)))
        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(max_workers=n_workers) as pool:
            for worker in [pool.submit(work) for _ in range(n_workers)]:
                worker.result()
        in_order = [evaluated[index] for index in range(len(evaluated))]
        return ResampledValues(
            scalars={name: np.concatenate([block[0][name] for block in in_order]) for name in SCALAR_METRICS},
            selective_accuracy=np.concatenate([block[1] for block in in_order]),
            smooth_ece=np.concatenate([block[2] for block in in_order]),
        )


class _Workspace:
    """One worker's arrays, reused from block to block (fresh multi-MB arrays cost page faults)."""

    def __init__(self, engine: ResampleEngine, rows: int) -> None:
        self.rows = rows
        self.prefix = PrefixSums(engine.n, engine._gather_at)
        self.blocks = (np.zeros((rows, self.prefix.width), dtype=np.float32),  # the counts; zero past column n - 1
                       np.empty((rows, len(engine._gather_at)), dtype=np.int64),  # prefix sums at the run ends, probes
                       np.empty((rows, len(engine.plain_runs.boundaries))))  # AURC's Phi at the run ends
        self.segment_sums = engine._segments.bind(self.blocks[0][:, : engine.n])  # of a whole block's counts


def _bin_means(values: np.ndarray, bins: np.ndarray, n_bins: int) -> np.ndarray:
    counts = np.bincount(bins, minlength=n_bins)
    sums = np.bincount(bins, weights=values, minlength=n_bins)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)


def _one_hot(index: np.ndarray, size: int) -> np.ndarray:
    """(size, len(index)) float64: column q is the unit vector of ``index[q]``."""
    matrix = np.zeros((size, len(index)))
    matrix[index, np.arange(len(index))] = 1.0
    return matrix
