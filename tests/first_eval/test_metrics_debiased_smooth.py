"""Debiased L2 calibration error against Kumar et al.'s ``calibration`` package and smooth ECE against
the reference implementation ``relplot`` (Błasiok & Nakkiran)."""

import numpy as np
import pytest

from first_eval.metrics import debiased_calibration_error, fit_smooth_ece, smooth_ece, smooth_ece_at

calibration = pytest.importorskip("calibration")
relplot = pytest.importorskip("relplot")


def sample(seed, n, kind):
    rng = np.random.default_rng(seed)
    confidences = rng.beta(5, 2, n)
    truth = {"calibrated": confidences, "over": confidences**2, "under": np.sqrt(confidences)}[kind]
    return confidences, rng.random(n) < truth


@pytest.mark.parametrize("seed, n, kind",
                         [(0, 5000, "calibrated"), (1, 2000, "over"), (2, 800, "under"), (3, 100, "over")])
def test_debiased_matches_calibration_get_calibration_error(seed, n, kind):
    confidences, correct = sample(seed, n, kind)
    labels = correct.astype(np.int64)
    assert not calibration.utils.is_discrete(confidences)  # the oracle then uses 15 equal-mass bins, as we do
    expected = calibration.get_calibration_error(confidences, labels, p=2, debias=True)
    assert debiased_calibration_error(confidences, correct) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    for n_bins in (5, 10, 30):
        expected = calibration.lower_bound_scaling_ce(confidences, labels, p=2, debias=True, num_bins=n_bins)
        ours = debiased_calibration_error(confidences, correct, n_bins)
        assert ours == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_debiased_removes_the_plug_in_bias_for_a_calibrated_model():
    """Kumar et al.'s point: the plug-in L2 error of a calibrated model is mostly noise; debiasing removes it."""
    from first_eval.metrics import equal_mass_calibration_errors

    estimates, plug_ins = [], []
    for seed in range(20):
        confidences, correct = sample(seed, 2000, "calibrated")
        estimates.append(debiased_calibration_error(confidences, correct))
        plug_ins.append(equal_mass_calibration_errors(confidences, correct).rmsce)
    assert np.mean(np.square(estimates)) < 0.25 * np.mean(np.square(plug_ins))


def test_debiased_with_tiny_bins_is_zero_not_nan():
    # One question per bin: every bin has n_b < 2 and contributes nothing.
    assert debiased_calibration_error([0.9, 0.8], [1, 0], n_bins=15) == 0.0


@pytest.mark.parametrize(
    "seed, n, kind",
    [(0, 1000, "calibrated"), (1, 5000, "over"), (2, 200, "under"), (3, 20000, "calibrated"), (4, 50, "over"),
     (5, 3, "calibrated")],
)
def test_smooth_ece_matches_relplot(seed, n, kind):
    confidences, correct = sample(seed, n, kind)
    labels = correct.astype(np.float64)
    expected, expected_bandwidth = relplot.smECE(confidences, labels, return_width=True)
    fitted = fit_smooth_ece(confidences, correct)
    assert fitted.value == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert fitted.bandwidth == expected_bandwidth
    assert smooth_ece(confidences, correct) == fitted.value


@pytest.mark.parametrize("bandwidth", [0.003, 0.02, 0.05, 0.3, 1.0])
def test_smooth_ece_at_fixed_bandwidth_matches_relplot(bandwidth):
    confidences, correct = sample(11, 3000, "over")
    expected = relplot.smECE_sigma(confidences, correct.astype(np.float64), bandwidth)
    assert smooth_ece_at(confidences, correct, bandwidth) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_smooth_ece_handles_confidences_at_the_ends_and_constant_confidence():
    confidences = np.array([0.0, 1.0, 1.0, 0.5, 0.5])
    correct = np.array([0, 1, 0, 1, 0])
    expected = relplot.smECE(confidences, correct.astype(float))
    assert fit_smooth_ece(confidences, correct).value == pytest.approx(expected, rel=1e-9)
    assert smooth_ece(np.full(10, 0.7), np.arange(10) < 7) == pytest.approx(
        relplot.smECE(np.full(10, 0.7), (np.arange(10) < 7).astype(float)), abs=1e-12)


def test_smooth_ece_bandwidth_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="bandwidth must be in"):
        smooth_ece_at([0.5], [1], 0.0)


@pytest.mark.parametrize("bandwidth", [0.5, 0.05, 0.0075])  # the last gives an even grid size (1334)
def test_smoothing_matrix_equals_the_fft_smoothing(bandwidth):
    from first_eval.metrics.smooth_ece import grid_size, smooth_on_grid, smoothing_matrix

    n_grid = grid_size(bandwidth)
    values = np.random.default_rng(0).random((3, n_grid))
    np.testing.assert_allclose(values @ smoothing_matrix(n_grid, bandwidth), smooth_on_grid(values, bandwidth),
                               rtol=1e-10, atol=1e-10)
