"""Invariants that hold for any input (Hypothesis) and known ground truth on synthetic data."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from first_eval.metrics import (
    auroc,
    compute_metrics,
    debiased_calibration_error,
    ece,
    equal_mass_calibration_errors,
    equal_width_calibration_errors,
    smooth_ece,
)
from first_eval.scores import ChoiceProbs, ChoiceScores

confidence = st.floats(0.0, 1.0, allow_nan=False)
# Confidences with deliberate repeats (ties) and the exact ends 0 and 1.
samples = st.lists(st.tuples(st.one_of(confidence, st.sampled_from([0.0, 0.25, 0.5, 1.0])), st.booleans()),
                   min_size=1, max_size=80)
TOLERANCE = 1e-12


@given(samples, st.integers(1, 30))
@settings(max_examples=150, deadline=None)
def test_binned_errors_are_ordered_power_means_in_unit_interval(pairs, n_bins):
    confidences, correct = map(np.array, zip(*pairs))
    for errors in (equal_width_calibration_errors(confidences, correct, n_bins),
                   equal_mass_calibration_errors(confidences, correct, n_bins)):
        assert -TOLERANCE <= errors.ece <= 1 + TOLERANCE
        assert errors.ece <= errors.rmsce + TOLERANCE  # mean <= root-mean-square <= max
        assert errors.rmsce <= errors.mce + TOLERANCE
        assert errors.mce <= 1 + TOLERANCE
    assert 0.0 <= debiased_calibration_error(confidences, correct, n_bins) <= 1.0
    assert 0.0 <= smooth_ece(confidences, correct) <= 1.0


@given(samples)
@settings(max_examples=100, deadline=None)
def test_auroc_is_none_exactly_when_one_class_and_flips_with_the_labels(pairs):
    confidences, correct = map(np.array, zip(*pairs))
    value = auroc(confidences, correct)
    if correct.all() or not correct.any():
        assert value is None
    else:
        assert 0.0 <= value <= 1.0
        assert auroc(confidences, ~correct) == pytest.approx(1.0 - value)


@given(st.lists(st.lists(st.floats(-20, 20), min_size=2, max_size=5), min_size=1, max_size=40), st.integers(0, 10**6))
@settings(max_examples=40, deadline=None)
def test_compute_metrics_never_crashes_and_is_deterministic(score_lists, seed):
    rng = np.random.default_rng(seed)
    gold = [int(rng.integers(0, len(s))) for s in score_lists]
    probs = ChoiceScores.from_lists(score_lists, gold).probabilities()
    first = compute_metrics(probs, n_bins=10, n_bootstrap=25, seed=seed)
    assert first.to_dict() == compute_metrics(probs, n_bins=10, n_bootstrap=25, seed=seed).to_dict()
    for name in ("ece", "mce", "rmsce", "brier", "nll", "aurc", "accuracy"):
        estimate = getattr(first, name)
        assert estimate.ci_low <= estimate.ci_high
    if first.auroc.value is None:
        assert first.auroc.ci_low is None


def test_perfectly_calibrated_data_has_small_ece():
    """correct ~ Bernoulli(confidence): only the finite-sample bias is left (about 0.005 on 20k)."""
    rng = np.random.default_rng(0)
    confidences = rng.uniform(0.25, 1.0, 20_000)
    correct = rng.random(20_000) < confidences
    assert ece(confidences, correct) < 0.02
    assert smooth_ece(confidences, correct) < 0.02
    assert debiased_calibration_error(confidences, correct) < 0.02


def test_overconfident_data_is_detected_with_a_tight_interval():
    """Confidence 0.9 but 60% right: ECE is 0.3 and the interval should say so."""
    rng = np.random.default_rng(1)
    n = 5000
    choice_probs = np.tile([0.9, 0.05, 0.05], n)
    gold = np.where(rng.random(n) < 0.6, 0, 1)
    probs = ChoiceProbs.from_probs(choice_probs, np.arange(0, 3 * n + 1, 3), gold)
    metrics = compute_metrics(probs, n_bootstrap=200)
    assert metrics.ece.value == pytest.approx(0.9 - metrics.accuracy.value)
    assert 0.27 < metrics.ece.ci_low < metrics.ece.value < metrics.ece.ci_high < 0.33
    assert metrics.auroc.value == pytest.approx(0.5)  # one confidence for all: no discrimination
