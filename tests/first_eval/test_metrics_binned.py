"""Binned calibration errors (ECE, MCE, RMSCE, equal-mass ECE) against hand-worked values and oracles:
torchmetrics, sklearn.calibration.calibration_curve, and Kumar et al.'s ``calibration`` package."""

import numpy as np
import pytest
from sklearn.calibration import calibration_curve

from first_eval.metrics import (
    ece,
    ece_equal_mass,
    equal_mass_upper_edges,
    equal_width_bin_indices,
    equal_width_calibration_errors,
    mce,
    reliability_bins,
    rmsce,
)


def away_from_edges(rng, n, n_bins):
    """Confidences at least 1e-6 from every bin edge, so edge conventions cannot matter."""
    values = rng.uniform(0.25, 1.0, n)
    nearest = np.round(values * n_bins) / n_bins
    return np.where(np.abs(values - nearest) < 1e-6, values + 2e-6, values).clip(0, 1 - 1e-6)


def synthetic(seed, n=2000, n_bins=15, sharpness=1.5):
    rng = np.random.default_rng(seed)
    confidences = away_from_edges(rng, n, n_bins)
    correct = rng.random(n) < confidences**sharpness  # over-confident
    return confidences, correct


def test_hand_worked_two_bins():
    # bins of width 0.1: 0.9 -> bin 9 (acc 1, gap 0.1); 0.6 -> bin 6 (acc 0, gap 0.6)
    assert ece([0.9, 0.6], [1, 0], n_bins=10) == pytest.approx(0.5 * 0.1 + 0.5 * 0.6)
    assert mce([0.9, 0.6], [1, 0], n_bins=10) == pytest.approx(0.6)
    assert rmsce([0.9, 0.6], [1, 0], n_bins=10) == pytest.approx(np.sqrt(0.5 * 0.01 + 0.5 * 0.36))


def test_hand_worked_shared_bin():
    # All four in bin [0.7, 0.8): mean confidence 0.75, accuracy 0.5 -> every error is 0.25.
    confidences, correct = [0.72, 0.74, 0.76, 0.78], [True, False, True, False]
    errors = equal_width_calibration_errors(confidences, correct, n_bins=10)
    assert (errors.ece, errors.mce, errors.rmsce) == pytest.approx((0.25, 0.25, 0.25))


def test_confidence_one_lands_in_last_bin_torchmetrics_issue_3510():
    """torchmetrics' bucketize(right=True) - 1 gives 1.0 a bin of its own (index M); ours closes the last bin.

    confidences [1.0, 0.96, 0.25, 0.25], correct [0, 1, 0, 1], 10 bins:
    last bin [0.9, 1.0] holds 1.0 and 0.96: mean confidence 0.98, accuracy 0.5, gap 0.48, weight 1/2;
    bin [0.2, 0.3) holds both 0.25: gap |0.5 - 0.25| = 0.25, weight 1/2.
    ECE = 0.24 + 0.125 = 0.365, MCE = 0.48.
    (torchmetrics would report 0.25 + 0.01 + 0.125 = 0.385 and MCE 1.0.)
    """
    confidences, correct = [1.0, 0.96, 0.25, 0.25], [0, 1, 0, 1]
    assert equal_width_bin_indices(np.array([1.0, 0.96, 0.25]), 10).tolist() == [9, 9, 2]
    assert ece(confidences, correct, n_bins=10) == pytest.approx(0.365)
    assert mce(confidences, correct, n_bins=10) == pytest.approx(0.48)
    bins = reliability_bins(confidences, correct, n_bins=10)
    assert bins.counts.tolist() == [0, 0, 2, 0, 0, 0, 0, 0, 0, 2]
    assert bins.mean_confidence[9] == pytest.approx(0.98) and bins.accuracy[9] == pytest.approx(0.5)


@pytest.mark.parametrize("n_bins", [1, 2, 3, 5, 7, 10, 15, 20, 100])
def test_bin_assignment_matches_searchsorted_on_linspace_edges_even_at_edges(n_bins):
    edges = np.linspace(0, 1, n_bins + 1)
    near_edges = np.concatenate([edges, np.nextafter(edges, 0), np.nextafter(edges, 1)]).clip(0, 1)
    grid = np.round(np.arange(0, 1.0001, 0.05), 10)  # decimal values such as 0.6 that sit on or next to edges
    rng = np.random.default_rng(n_bins)
    confidences = np.concatenate([near_edges, grid, rng.random(1000)])
    expected = np.searchsorted(edges[1:-1], confidences, side="right")  # sklearn calibration_curve's rule
    np.testing.assert_array_equal(equal_width_bin_indices(confidences, n_bins), expected)


@pytest.mark.parametrize("seed, n_bins", [(0, 15), (1, 10), (2, 7), (3, 30)])
def test_reliability_bins_match_sklearn_calibration_curve(seed, n_bins):
    rng = np.random.default_rng(seed)
    confidences = rng.random(3000) ** 0.5
    correct = rng.random(3000) < confidences
    bins = reliability_bins(confidences, correct, n_bins)
    prob_true, prob_pred = calibration_curve(correct, confidences, n_bins=n_bins, strategy="uniform")
    filled = bins.counts > 0
    np.testing.assert_allclose(bins.accuracy[filled], prob_true, rtol=1e-12)
    np.testing.assert_allclose(bins.mean_confidence[filled], prob_pred, rtol=1e-12)
    assert np.isnan(bins.accuracy[~filled]).all() and np.isnan(bins.mean_confidence[~filled]).all()
    np.testing.assert_array_equal(bins.edges, np.linspace(0, 1, n_bins + 1))
    assert bins.counts.sum() == 3000


@pytest.mark.parametrize("seed, n_bins", [(0, 15), (1, 10), (2, 5)])
def test_matches_torchmetrics_binary_calibration_error(seed, n_bins):
    torch = pytest.importorskip("torch")
    from torchmetrics.functional.classification import binary_calibration_error

    confidences, correct = synthetic(seed, n_bins=n_bins)
    preds, target = torch.tensor(confidences, dtype=torch.float64), torch.tensor(correct.astype(np.int64))
    errors = equal_width_calibration_errors(confidences, correct, n_bins)
    for norm, ours in (("l1", errors.ece), ("l2", errors.rmsce), ("max", errors.mce)):
        theirs = float(binary_calibration_error(preds, target, n_bins=n_bins, norm=norm))
        assert ours == pytest.approx(theirs, rel=1e-9), norm


def test_matches_torchmetrics_multiclass_calibration_error_on_four_choices():
    torch = pytest.importorskip("torch")
    from torchmetrics.functional.classification import multiclass_calibration_error

    rng = np.random.default_rng(7)
    logits = rng.normal(0, 2, size=(1500, 4))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    gold = rng.integers(0, 4, 1500)
    confidences, correct = probs.max(axis=1), probs.argmax(axis=1) == gold
    theirs = float(multiclass_calibration_error(torch.tensor(probs), torch.tensor(gold), num_classes=4, n_bins=15))
    assert ece(confidences, correct, 15) == pytest.approx(theirs, rel=1e-6)  # torchmetrics works in float32 here


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_width_ece_matches_kumar_get_ece_away_from_edges(seed):
    calibration = pytest.importorskip("calibration")
    confidences, correct = synthetic(seed)
    # get_ece bins are (b/M, (b+1)/M] (right-closed), the same as ours away from the edges.
    theirs = calibration.get_ece(confidences, correct.astype(np.int64), num_bins=15)
    assert ece(confidences, correct, 15) == pytest.approx(theirs, rel=1e-9)


@pytest.mark.parametrize("seed, n, n_bins", [(0, 2000, 15), (1, 31, 15), (2, 500, 10), (3, 7, 15)])
def test_equal_mass_ece_and_edges_match_kumar(seed, n, n_bins):
    calibration = pytest.importorskip("calibration")
    from calibration.utils import get_equal_bins

    confidences, correct = synthetic(seed, n=n)
    np.testing.assert_allclose(equal_mass_upper_edges(confidences, n_bins), get_equal_bins(list(confidences), n_bins))
    theirs = calibration.get_ece_em(confidences, correct.astype(np.int64), num_bins=n_bins)
    assert ece_equal_mass(confidences, correct, n_bins) == pytest.approx(theirs, rel=1e-9)


def test_equal_mass_bins_keep_ties_together():
    calibration = pytest.importorskip("calibration")
    from calibration.utils import get_equal_bins

    confidences = np.array([0.3] * 5 + [0.6] * 2 + [1.0] * 8)  # splits fall inside the ties
    edges = equal_mass_upper_edges(confidences, 5)
    np.testing.assert_allclose(edges, get_equal_bins(list(confidences), 5))
    assert edges.tolist() == [0.3, 0.6, 1.0]
    correct = np.arange(15) % 2 == 0
    theirs = calibration.get_ece_em(confidences, correct.astype(np.int64), num_bins=5)
    assert ece_equal_mass(confidences, correct, 5) == pytest.approx(theirs)


def test_perfect_and_worst_cases():
    assert ece([1.0, 1.0, 0.0], [1, 1, 0]) == 0.0
    assert ece([1.0, 1.0], [0, 0]) == 1.0
    assert mce([1.0, 0.0], [0, 1]) == 1.0


@pytest.mark.parametrize(
    "confidences, correct, n_bins, message",
    [
        ([0.5, 1.2], [1, 0], 15, r"\[0, 1\]; got 1.2 at index 1"),
        ([0.5, np.nan], [1, 0], 15, "got nan at index 1"),
        ([0.5, 0.7], [1, 2], 15, "0/1 or bool; got 2 at index 1"),
        ([0.5, 0.7], [1], 15, "shape"),
        ([], [], 15, "empty"),
        ([0.5], [1], 0, "n_bins must be an integer >= 1; got 0"),
        ([0.5], [1], 2.5, "got 2.5"),
    ],
)
def test_bad_inputs_are_reported_with_the_bad_value(confidences, correct, n_bins, message):
    with pytest.raises(ValueError, match=message):
        ece(confidences, correct, n_bins=n_bins)
