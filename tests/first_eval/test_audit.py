"""`audit_task`: every post-calibration number is cross-fitted (out-of-fold), never scored in-sample."""

from __future__ import annotations

import numpy as np
import pytest

from first_eval.audit import AuditConfig, audit_task
from first_eval.calibrators import CALIBRATORS, cross_fit
from first_eval.lm_eval_bridge.samples import read_samples_path
from first_eval.metrics import compute_metrics
from first_demo.synthetic import SyntheticTask, write_samples_file

# Over-confident (sharpness 2.5) 4-choice questions: every calibrator can fit every fold.
TASK = SyntheticTask("synth_audit", 600, (3, 4), sharpness=2.5)
# Not the defaults (5 folds, seed 0): the audit must hand its own settings to cross_fit.
CONFIG = AuditConfig(n_bins=10, n_folds=4, seed=3, n_bootstrap=0)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    (task,) = read_samples_path(write_samples_file(TASK, tmp_path_factory.mktemp("audit"), seed=2))
    return task


@pytest.fixture(scope="module")
def audit(samples):
    return audit_task(samples, CONFIG)


@pytest.mark.parametrize("name", ["temperature", "platt", "isotonic"])
def test_calibrated_metrics_are_those_of_the_cross_fitted_probabilities(samples, audit, name):
    scores = samples.choice_scores(CONFIG.score_mode)
    crossed = cross_fit(name, scores, n_folds=CONFIG.n_folds, seed=CONFIG.seed)
    expected = compute_metrics(crossed.probs, n_bins=CONFIG.n_bins, n_bootstrap=0)
    result = audit.calibrated[name]
    for key in ("ece", "brier", "nll", "accuracy", "mean_confidence", "auroc"):
        assert getattr(result.metrics, key).value == pytest.approx(getattr(expected, key).value, abs=1e-12), key
    assert result.fold_params == crossed.fold_calibrators
    # the calibrator saved for reuse is the one fit on every question
    assert result.fitted == CALIBRATORS[name]().fit(scores).to_dict()


@pytest.mark.parametrize("name", ["platt", "isotonic"])
def test_calibrated_metrics_are_not_the_in_sample_ones(samples, audit, name):
    """A calibrator scored on its own training questions looks better than it is (isotonic most of all)."""
    scores = samples.choice_scores(CONFIG.score_mode)
    in_sample = compute_metrics(CALIBRATORS[name]().fit(scores).transform(scores), n_bins=CONFIG.n_bins, n_bootstrap=0)
    crossed = audit.calibrated[name].metrics
    assert crossed.ece.value != pytest.approx(in_sample.ece.value, abs=1e-6)
    assert crossed.nll.value > in_sample.nll.value


def test_isotonic_in_sample_ece_is_far_below_the_honest_one(samples, audit):
    """The gap the cross-fitting exists for: isotonic regression nearly interpolates its training questions."""
    scores = samples.choice_scores(CONFIG.score_mode)
    fitted = CALIBRATORS["isotonic"]().fit(scores).transform(scores)
    confidences = fitted.choice_probs[scores.offsets[:-1] + fitted.predictions]
    correct = fitted.predictions == scores.gold
    # equal-width bins by hand: the in-sample ECE of isotonic regression is (almost) 0
    bins = np.minimum((confidences * CONFIG.n_bins).astype(int), CONFIG.n_bins - 1)
    gaps = [abs(correct[bins == b].mean() - confidences[bins == b].mean()) * (bins == b).mean()
            for b in range(CONFIG.n_bins) if (bins == b).any()]
    assert sum(gaps) < 0.02
    assert audit.calibrated["isotonic"].metrics.ece.value > sum(gaps) + 0.01
