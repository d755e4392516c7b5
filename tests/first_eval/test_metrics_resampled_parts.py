"""The bootstrap engine's fast building blocks equal their slow definitions on random data: segment sums against a
dense product, sums of a row's first entries and prefix sums against a cumulative sum, int32 draws against int64
ones, and the engine against the plain metrics on data with many ties (several segments per bin, mixed tie groups)
and against itself, bit for bit, whatever the threads and the prefix sums' float type."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from first_eval.metrics import bootstrap, ece, resampled, smooth_ece_at
from first_eval.metrics.bootstrap import resample_counts, resample_draw_blocks
from first_eval.metrics.ranking import rank_by_confidence
from first_eval.metrics.resampled import ResampleEngine
from first_eval.metrics.segment_sums import PrefixSums, SegmentSums, sums_of_first


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


@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 33, 1000, 4099])
@pytest.mark.parametrize("float64", [False, True])
def test_prefix_sums_equal_a_cumulative_sum(n, float64, monkeypatch):
    if float64:  # the path for n >= 2^24, on small data
        monkeypatch.setattr(PrefixSums, "FLOAT32_EXACT_BELOW", 0)
    rng = np.random.default_rng(n)
    positions = np.unique(np.concatenate([[0, n], rng.integers(0, n + 1, size=min(n, 40))]))
    prefix_sums = PrefixSums(n, positions)
    assert prefix_sums.dtype == (np.float64 if float64 else np.float32)
    floors = np.unique(np.floor((1 - np.array([1.0, 0.8, 0.5, 0.37, 0.01])) * n)).astype(prefix_sums.dtype)
    for _ in range(3):  # the scratch arrays are reused from row to row
        counts = np.bincount(rng.integers(0, n, size=n), minlength=n)
        weights = np.zeros(prefix_sums.width, dtype=prefix_sums.dtype)
        weights[:n] = counts
        got = np.empty(len(positions), dtype=np.int64)
        cut, at_cut = prefix_sums(weights, floors, out=got)
        running = np.concatenate([[0], np.cumsum(counts)])  # running[p] = sum_{j<p} counts[j]
        np.testing.assert_array_equal(got, running[positions])
        expected_cut = np.searchsorted(running, floors, side="right") - 1
        np.testing.assert_array_equal(cut, expected_cut)
        np.testing.assert_array_equal(at_cut, running[expected_cut])


@pytest.mark.parametrize("n", [1, 2, 7, 301, 65537])
def test_int32_draws_are_the_int64_draws(n):
    int64 = np.concatenate(list(resample_draw_blocks(n, 9, seed=4)))
    for rows in (9, 4, 1):  # odd n: numpy's 32-bit halves of a 64-bit output straddle the blocks
        int32 = np.concatenate(list(resample_draw_blocks(n, 9, seed=4, rows_per_block=rows, dtype=np.int32)))
        assert int32.dtype == np.int32
        np.testing.assert_array_equal(int32, int64)


@pytest.mark.parametrize("high", [2**31 - 1, 2**31 - 12345, 3 * 2**28 + 1])
def test_numpy_draws_int32_and_int64_from_the_same_stream_up_to_2_to_the_31(high):
    """What ``ResampleEngine.run`` relies on for every n <= 2^31 - 1 (numpy's buffered 32-bit Lemire draws)."""
    int64 = np.random.default_rng(5).integers(0, high, size=1001, dtype=np.int64)
    np.testing.assert_array_equal(np.random.default_rng(5).integers(0, high, size=1001, dtype=np.int32), int64)


def test_engine_values_depend_neither_on_the_workers_nor_on_the_prefix_dtype(monkeypatch):
    """Bit for bit: one worker or three, float32 or float64 prefix sums, ``run`` or ``evaluate`` per block."""
    monkeypatch.setattr(bootstrap, "BLOCK_INDICES", 7 * 3000)  # 7 resamples per block: many blocks
    rng = np.random.default_rng(6)
    n = 3000
    confidences = np.round(rng.beta(4, 2, size=n), 2)
    correct = rng.random(n) < confidences
    ranking = rank_by_confidence(confidences, correct)
    brier, nll = (1 - confidences) ** 2, -np.log(np.clip(confidences, 1e-6, 1))

    def run(workers: int, float64: bool = False):
        monkeypatch.setattr(resampled, "MAX_WORKERS", workers)
        monkeypatch.setattr(PrefixSums, "FLOAT32_EXACT_BELOW", 0 if float64 else 2**24)
        values = ResampleEngine(ranking, brier, nll, 15, (0.5, 0.8), 0.05).run(40, seed=2)
        return {**values.scalars, "selective": values.selective_accuracy, "smooth": values.smooth_ece}

    one = run(1)
    engine = ResampleEngine(ranking, brier, nll, 15, (0.5, 0.8), 0.05)
    with threadpool_limits(1, user_api="blas"):  # as in ``run``: a multi-threaded BLAS may sum in another order
        blocks = [engine.evaluate(np.stack([resample_counts(row, n) for row in draws]))
                  for draws in resample_draw_blocks(n, 40, seed=2)]
    by_block = {name: np.concatenate([block[0][name] for block in blocks]) for name in blocks[0][0]}
    by_block.update(selective=np.concatenate([block[1] for block in blocks]),
                    smooth=np.concatenate([block[2] for block in blocks]))
    for other in (run(3), run(1, float64=True), by_block):
        assert other.keys() == one.keys()
        for name, values in one.items():
            np.testing.assert_array_equal(other[name], values, err_msg=name)


def test_bound_segment_sums_follow_their_buffer():
    rng = np.random.default_rng(8)
    n, bounds = 50, np.array([0, 3, 4, 20, 50])
    segments = SegmentSums(bounds, rng.normal(size=(n, 3)).astype(np.float32))
    buffer = np.zeros((4, n), dtype=np.float32)
    sums = segments.bind(buffer)
    for _ in range(2):  # refilled between calls, as the engine's workspace is
        buffer[...] = rng.integers(0, 4, size=buffer.shape)
        np.testing.assert_array_equal(sums(), segments(buffer.copy()))
