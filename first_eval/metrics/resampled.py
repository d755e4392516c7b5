"""Every metric of the set on many bootstrap resamples at once (the engine behind the CIs).

A resample is a vector ``w`` (n,) of multinomial counts (how often each question was drawn, summing to
``n``), and each metric is written as a function of weighted sums, so ``B`` resamples cost a few passes
over a (B, n) count matrix instead of ``B`` full metric computations:

- Questions are first put in ``ConfidenceRanking`` order (ascending confidence, correct first within
  ties). Every bin is then a contiguous run of positions, so per-bin counts and correct counts are
  differences of the prefix sums ``S = cumsum(w)`` and ``SZ`` (the same over wrong answers only).
- Per-bin confidence sums, Brier and NLL come from one float32 matrix product ``W @ F``; the columns of
  ``F`` are centred (confidence minus the bin's mean, score minus its mean) so float32 rounding stays
  ~1e-7 of the spread, and the centre is added back exactly.
- AUROC: with ``P``/``N`` the correct/wrong weight, ``U = sum_{wrong i} w_i (P - SY_i) + 1/2 sum_ties N_g P_g``
  where ``SY_i`` is the correct weight up to position ``i`` and ``sum_i w_i SZ_i = (N^2 + sum_i w_i^2) / 2``.
- AURC: ``n AURC = N H_n - sum_{wrong i} [Phi(D_i + w_i) - Phi(D_i)]`` with ``D_i = n - S_i`` copies more
  confident than ``i``, ``H`` the harmonic numbers and ``Phi(x) = sum_{j<x} H_j`` (a lookup table);
  mixed tie groups spread their errors evenly, as in ``selective.py``.
- Selective accuracy: locate the coverage cut in ``S`` by binary search.
- Smooth ECE: grid values are a sparse linear map of ``w``; the kernel bandwidth is FIXED at the full
  sample's self-consistent ``sigma*`` (re-running the bisection per resample would cost 11 smoothings
  each). It is the costliest metric per resample, so only the first ``smooth_resamples`` resamples are
  used for its interval (200 by default; ``compute_metrics`` records the number used).

Equal-mass bin boundaries are fixed from the full sample (a resample's own quantiles would move them).
With all-ones counts every value equals the point estimate of the plain functions (tested).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from first_eval.metrics.binning import BinSums, equal_mass_bin_indices, equal_mass_upper_edges, equal_width_bin_indices
from first_eval.metrics.bootstrap import resample_counts, resample_draw_blocks
from first_eval.metrics.debiased import debiased_l2_from_bin_sums
from first_eval.metrics.ece import calibration_errors_from_gaps
from first_eval.metrics.ranking import ConfidenceRanking
from first_eval.metrics.smooth_ece import grid_assignment, grid_size, smooth_ece_from_grids

SCALAR_METRICS = (
    "accuracy", "mean_confidence", "ece", "ece_equal_mass", "mce", "rmsce", "ece_debiased",
    "brier", "nll", "auroc", "aurc",
)


@dataclass(frozen=True)
class ResampledValues:
    """Metric values per resample: ``scalars[name]`` (R,), ``selective_accuracy`` (R, len(coverages)),
    ``smooth_ece`` (R_smooth,) for the first ``R_smooth`` resamples."""

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

    def __init__(self, ranking: ConfidenceRanking, brier, nll, n_bins: int, coverages, smooth_bandwidth: float | None):
        self.n = n = ranking.n
        self.correct = ranking.correct
        self.coverages = np.asarray(coverages, dtype=np.float64)
        ranked = ranking.confidences
        positions = np.arange(n)

        # Bins are contiguous runs of ranked positions: bin b is [starts[b], starts[b+1]).
        width_bins = equal_width_bin_indices(ranked, n_bins)
        mass_bins = equal_mass_bin_indices(ranked, equal_mass_upper_edges(ranked, n_bins))
        self.n_width, self.n_mass = n_bins, int(mass_bins[-1]) + 1
        self.width_starts = np.searchsorted(width_bins, np.arange(self.n_width + 1))
        self.mass_starts = np.searchsorted(mass_bins, np.arange(self.n_mass + 1))
        self.width_centres = _bin_means(ranked, width_bins, self.n_width)
        self.mass_centres = _bin_means(ranked, mass_bins, self.n_mass)
        brier, nll = np.asarray(brier)[ranking.order], np.asarray(nll)[ranking.order]
        self.brier_mean, self.nll_mean = float(brier.mean()), float(nll.mean())
        features = np.zeros((n, 2 + self.n_width + self.n_mass), dtype=np.float32)
        features[:, 0] = brier - self.brier_mean
        features[:, 1] = nll - self.nll_mean
        features[positions, 2 + width_bins] = ranked - self.width_centres[width_bins]
        features[positions, 2 + self.n_width + mass_bins] = ranked - self.mass_centres[mass_bins]
        self.features = features

        # Wrong answers come in runs of consecutive positions; per resample only the prefix sums at the
        # ends of the runs are needed (sums over a run telescope). Mixed tie groups hold right and wrong.
        self.wrong_before = np.concatenate([[0], np.cumsum(~ranking.correct)])  # (n+1,) wrong at positions < p
        mixed = ranking.mixed_groups
        self.mixed_start = ranking.group_starts[mixed]
        self.mixed_split = self.mixed_start + ranking.group_correct[mixed]  # first wrong answer of the group
        self.mixed_end = ranking.group_ends[mixed]
        self.mixed_of = np.full(n, -1, dtype=np.int64)
        self.mixed_of[_positions_in(self.mixed_start, self.mixed_end, n)] = np.repeat(
            np.arange(len(mixed)), self.mixed_end - self.mixed_start)
        wrong = ~ranking.correct
        self.runs = _Runs(wrong)
        # AURC spreads the errors of mixed groups evenly, so its runs leave those groups out.
        self.plain_runs = _Runs(wrong & (self.mixed_of < 0)) if len(mixed) else self.runs

        # Positions p where every resample needs S_before(p) = sum_{j<p} w_j (and the wrong-only twin).
        self.probes = np.unique(np.concatenate(
            [self.width_starts, self.mass_starts, self.mixed_start, self.mixed_split, self.mixed_end]))
        harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n + 1))])
        self.harmonic_n = float(harmonic[n])
        self.phi = np.concatenate([[0.0], np.cumsum(harmonic[:n])])  # Phi(x) = sum_{j<x} H_j, x = 0..n

        self.smooth_bandwidth = smooth_bandwidth
        if smooth_bandwidth is not None:
            self._smooth_map = _grid_map(ranked, ranked - ranking.correct, grid_size(smooth_bandwidth))

    def evaluate(self, counts: np.ndarray, smooth_rows: int = 0,
                 weights: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Metrics for a block of resamples.

        Args:
            counts: (B, n) integer multiplicities in ranked order, each row summing to n.
            smooth_rows: how many of the first rows also get a smooth ECE.
            weights: ``counts`` as float32, when the caller has it already.

        Returns:
            (scalars: name -> (B,), selective accuracy (B, C), smooth ECE (smooth_rows,)).
        """
        counts = np.asarray(counts, dtype=np.int64)
        n, n_rows = self.n, len(counts)
        if counts.ndim != 2 or counts.shape[1] != n or (counts.sum(axis=1) != n).any():
            raise ValueError(f"counts must be (B, {n}) multiplicities summing to {n} per row")
        weights = counts.astype(np.float32) if weights is None else weights
        feature_sums = (weights @ self.features).astype(np.float64)  # (B, 2 + M + M')

        runs, plain = self.runs, self.plain_runs
        # prefix values are integers, so "prefix > m" is "prefix > floor(m)": search in int64, no float copy.
        cut_floors = np.floor((1.0 - self.coverages) * n).astype(np.int64)
        prefix = np.zeros(n + 1, dtype=np.int64)  # prefix[p] = S_before(p) = sum_{j<p} w_j
        run_squares = np.empty(n_rows)
        phi_sums = np.empty(n_rows)
        probe_before = np.empty((n_rows, len(self.probes)))
        probe_wrong_before = np.empty((n_rows, len(self.probes)))
        cut_at = np.empty((n_rows, len(cut_floors)), dtype=np.intp)
        cut_before = np.empty((n_rows, len(cut_floors)))
        cut_wrong_before = np.empty((n_rows, len(cut_floors)))
        for row in range(n_rows):
            np.cumsum(counts[row], out=prefix[1:])
            run_low, run_high = prefix[runs.starts], prefix[runs.ends]
            run_squares[row] = np.dot(run_high, run_high) - np.dot(run_low, run_low)
            wrong_through = np.cumsum(run_high - run_low)  # wrong weight in runs 0..r
            plain_low, plain_high = (run_low, run_high) if plain is runs else (prefix[plain.starts], prefix[plain.ends])
            phi_sums[row] = self.phi[n - plain_low].sum() - self.phi[n - plain_high].sum()
            probe_before[row] = prefix[self.probes]
            probe_wrong_before[row] = runs.wrong_before(self.probes, prefix, run_low, wrong_through)
            cut = np.searchsorted(prefix, cut_floors, side="right") - 1  # straddling position
            cut_at[row] = cut
            cut_before[row] = prefix[cut]
            cut_wrong_before[row] = runs.wrong_before(cut, prefix, run_low, wrong_through)

        scalars, selective = self._finish(feature_sums, run_squares, phi_sums, probe_before, probe_wrong_before,
                                          cut_at, cut_before, cut_wrong_before)
        smooth = np.empty(0)
        if smooth_rows and self.smooth_bandwidth is not None:
            grids = self._smooth_map(weights[:smooth_rows])  # (2G, rows)
            n_grid = grids.shape[0] // 2
            smooth = np.atleast_1d(smooth_ece_from_grids(grids[:n_grid].T, grids[n_grid:].T, self.smooth_bandwidth))
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

        # AUROC: U = P N + N^2/2 - 1/2 sum_runs (S_end^2 - S_start^2) counts pairs (wrong i, right j), j after i;
        # tied pairs count half.
        pairs = right_total * wrong_total + wrong_total**2 / 2 - run_squares / 2
        pairs += 0.5 * (mixed_right * mixed_wrong).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            auroc = np.where(right_total * wrong_total > 0, pairs / (right_total * wrong_total), np.nan)
        # AURC: mixed groups spread their errors evenly over their positions.
        more_confident = (n - end_before).astype(np.int64)
        wrong_share = mixed_wrong / np.where(mixed_size > 0, mixed_size, 1)
        right_share = mixed_right / np.where(mixed_size > 0, mixed_size, 1)
        mixed_phi = (wrong_share * (self.phi[more_confident + mixed_size.astype(np.int64)] - self.phi[more_confident])).sum(axis=1)
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

    def run(self, n_resamples: int, seed: int, smooth_resamples: int = 200) -> ResampledValues:
        """Draw ``n_resamples`` seeded resamples (``bootstrap.resample_draw_blocks``) and evaluate them all.

        Drawing and counting (about half the work; numpy releases the GIL for both) runs one block ahead
        in a helper thread, so a second core overlaps it with the evaluation. The thread consumes the one
        random stream in block order, so results do not depend on timing.
        """
        blocks = resample_draw_blocks(self.n, n_resamples, seed)

        def next_counts() -> tuple[np.ndarray, np.ndarray] | None:
            draws = next(blocks, None)
            if draws is None:
                return None
            counts = np.empty(draws.shape, dtype=np.int64)
            for row, row_draws in enumerate(draws):
                counts[row] = resample_counts(row_draws, self.n)
            return counts, counts.astype(np.float32)

        scalars = {name: [] for name in SCALAR_METRICS}
        selective, smooth = [], []
        done = 0
        with ThreadPoolExecutor(max_workers=1) as prefetcher:
            pending = prefetcher.submit(next_counts)
            while (block := pending.result()) is not None:
                pending = prefetcher.submit(next_counts)
                counts, weights = block
                block_scalars, block_selective, block_smooth = self.evaluate(
                    counts, smooth_rows=max(0, min(len(counts), smooth_resamples - done)), weights=weights)
                for name in SCALAR_METRICS:
                    scalars[name].append(block_scalars[name])
                selective.append(block_selective)
                smooth.append(block_smooth)
                done += len(counts)
        return ResampledValues(
            scalars={name: np.concatenate(parts) for name, parts in scalars.items()},
            selective_accuracy=np.concatenate(selective),
            smooth_ece=np.concatenate(smooth),
        )


def _bin_means(values: np.ndarray, bins: np.ndarray, n_bins: int) -> np.ndarray:
    counts = np.bincount(bins, minlength=n_bins)
    sums = np.bincount(bins, weights=values, minlength=n_bins)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)


def _positions_in(starts: np.ndarray, ends: np.ndarray, n: int) -> np.ndarray:
    """(n,) bool: position lies in one of the disjoint ranges [starts, ends)."""
    edges = np.zeros(n + 1, dtype=np.int64)
    np.add.at(edges, starts, 1)
    np.add.at(edges, ends, -1)
    return np.cumsum(edges)[:n] > 0


class _Runs:
    """Maximal runs of consecutive flagged positions: run r covers ``starts[r] <= p < ends[r]``."""

    def __init__(self, flags: np.ndarray) -> None:
        change = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
        self.starts = np.flatnonzero(change == 1)
        self.ends = np.flatnonzero(change == -1)
        # For a position p: runs ending at or before p, and the run containing p - 1 (else -1).
        self._runs_done = np.searchsorted(self.ends, np.arange(len(flags) + 1), side="right")
        # A run is open at p when start < p < end: positions start..p-1 are before p, the rest are not.
        positions = np.arange(len(flags) + 1)
        run = np.searchsorted(self.starts, positions - 1, side="right") - 1  # last run starting before p
        open_at = (run >= 0) & (positions < self.ends[np.maximum(run, 0)]) if len(self.starts) else run < -1
        self._open_run = np.where(open_at, run, -1)

    def wrong_before(self, positions, prefix, run_low, weight_through) -> np.ndarray:
        """Flagged weight at positions < p: whole runs ended by p plus the open part of a run containing p - 1."""
        positions = np.asarray(positions)
        done = self._runs_done[positions]
        whole = np.where(done > 0, weight_through[np.maximum(done - 1, 0)], 0) if len(weight_through) else 0 * done
        run = self._open_run[positions]
        partial = np.where(run >= 0, prefix[positions] - run_low[np.maximum(run, 0)], 0) if len(run_low) else 0 * done
        return whole + partial


def _grid_map(confidences: np.ndarray, residuals: np.ndarray, n_grid: int):
    """A function (R, n) float32 weights -> (2G, R) grid values of the weights and of ``w * residual``."""
    from scipy import sparse

    cells, fractions = grid_assignment(confidences, n_grid)
    n = len(confidences)
    rows = np.concatenate([cells, cells + 1, n_grid + cells, n_grid + cells + 1])
    columns = np.tile(np.arange(n), 4)
    values = np.concatenate([1 - fractions, fractions, (1 - fractions) * residuals, fractions * residuals])
    matrix = sparse.csr_matrix((values.astype(np.float32), (rows, columns)), shape=(2 * n_grid, n))

    def apply(weights: np.ndarray) -> np.ndarray:
        return np.asarray(matrix @ np.ascontiguousarray(weights.T), dtype=np.float64)

    return apply
