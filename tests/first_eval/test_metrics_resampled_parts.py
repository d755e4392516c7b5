"""The bootstrap engine's fast building blocks equal their slow definitions on random data: segment sums against a
dense product, sums of a row's first entries against a cumulative sum, and the engine against the plain metrics on
data with many ties (several segments per bin, mixed tie groups)."""

import numpy as np
import pytest

from first_eval.metrics import ece, smooth_ece_at
from first_eval.metrics.bootstrap import resample_counts, resample_draw_blocks
from first_eval.metrics.ranking import rank_by_confidence
from first_eval.metrics.resampled import ResampleEngine
from first_eval.metrics.segment_sums import SegmentSums, sums_of_first


@pytest.mark.parametrize("seed", range(5))
def test_segment_sums_equal_a_dense_product(seed):
    rng = np.random.default_rng(seed)
    n, n_rows, m = int(rng.integers(1, 400)), int(rng.integers(1, 9)), int(rng.integers(1, 6))
    bounds = np.unique(np.concatenate([[0, n], rng.integers(0, n, size=rng.integers(0, 30))]))
    coefficients = rng.normal(size=(n, m)).astype(np.float32)
    weights = rng.integers(0, 4, size=(n_rows, n)).astype(np.float32)
    got = SegmentSums(bounds, coefficients)(weights)
    segment_of = np.searchsorted(bounds, np.arange(n), side="right") - 1
    indicator = np.zeros((n, len(bounds) - 1))
    indicator[np.arange(n), segment_of] = 1.0
    expected = np.einsum("rp,pj,pq->qrj", weights.astype(np.float64), coefficients.astype(np.float64), indicator)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_segment_sums_refuse_bounds_that_do_not_tile_the_positions():
    with pytest.raises(ValueError, match="rise strictly"):
        SegmentSums(np.array([0, 3, 3, 5]), np.zeros((5, 1)))
    with pytest.raises(ValueError, match="rise strictly"):
        SegmentSums(np.array([0, 4]), np.zeros((5, 1)))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shared", [True, False])
def test_sums_of_first_equal_a_cumulative_sum(seed, shared):
    rng = np.random.default_rng(seed)
    n_rows, width, n_counts = 6, int(rng.integers(1, 60)), int(rng.integers(1, 12))
    values = rng.integers(0, 9, size=(n_rows, width))
    counts = rng.integers(0, width + 1, size=(1 if shared else n_rows, n_counts))
    counts[:, 0] = 0
    counts[:, -1] = width
    running = np.concatenate([np.zeros((n_rows, 1), dtype=np.int64), np.cumsum(values, axis=1)], axis=1)
    expected = np.take_along_axis(running, np.broadcast_to(counts, (n_rows, n_counts)), axis=1)
    np.testing.assert_array_equal(sums_of_first(values, counts), expected)


@pytest.mark.parametrize("decimals", [1, 2, 3])
def test_engine_equals_the_plain_metrics_on_tied_confidences(decimals):
    rng = np.random.default_rng(decimals)
    n = 3000
    confidences = np.round(rng.beta(4, 2, size=n), decimals)
    correct = rng.random(n) < confidences
    ranking = rank_by_confidence(confidences, correct)
    brier, nll = (1 - confidences) ** 2, -np.log(np.clip(confidences, 1e-6, 1))
    engine = ResampleEngine(ranking, brier, nll, 15, (0.5, 0.8), 0.05)
    draws = next(resample_draw_blocks(n, 6, seed=3))
    counts = np.stack([resample_counts(row, n) for row in draws])
    scalars, _, smooth = engine.evaluate(counts)
    for row, indices in enumerate(draws):
        c, y = ranking.confidences[indices], ranking.correct[indices]
        assert scalars["ece"][row] == pytest.approx(ece(c, y), rel=1e-6, abs=1e-7)
        assert smooth[row] == pytest.approx(smooth_ece_at(c, y, 0.05), rel=1e-5, abs=1e-7)
