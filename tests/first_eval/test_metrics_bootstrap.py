"""The bootstrap engine and ``compute_metrics``: every resampled value equals the plain metric on the
resampled questions, intervals are seeded and deterministic, and the result serialises to JSON."""

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from first_eval.metrics import (
    aurc,
    bootstrap_values,
    compute_metrics,
    ece,
    equal_width_calibration_errors,
    percentile_interval,
    selective_accuracy,
    smooth_ece_at,
)
from first_eval.metrics.binning import bin_sums, equal_mass_bin_indices, equal_mass_upper_edges
from first_eval.metrics.bootstrap import resample_counts, resample_draw_blocks
from first_eval.metrics.debiased import debiased_l2_from_bin_sums
from first_eval.metrics.ece import calibration_errors_from_bin_sums
from first_eval.metrics.ranking import rank_by_confidence
from first_eval.metrics.resampled import ResampleEngine
from first_eval.scores import ChoiceProbs, ChoiceScores


def choice_probs(seed, n=400, n_choices=4, sharpness=2.0, decimals=None) -> ChoiceProbs:
    """Multiple-choice questions with a planted over-confidence (scores sharpened by ``sharpness``)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, size=(n, n_choices))
    gold = rng.integers(0, n_choices, n)
    logits[np.arange(n), gold] += 1.0
    scores = ChoiceScores(logits.ravel() * sharpness, np.arange(0, n * n_choices + 1, n_choices), gold)
    probs = scores.probabilities()
    if decimals is not None:  # quantise so that many confidences tie, right and wrong answers mixed
        rounded = np.round(probs.choice_probs, decimals)
        probs = ChoiceProbs(rounded, probs.offsets, probs.gold, probs.predictions)
    return probs


def scores_of(probs):
    from first_eval.metrics import per_question_brier, per_question_nll

    return (per_question_brier(probs.choice_probs, probs.offsets, probs.gold),
            per_question_nll(probs.choice_probs, probs.offsets, probs.gold))


@pytest.mark.parametrize("decimals", [None, 1, 2])
def test_each_resample_equals_the_plain_metrics_on_the_resampled_questions(decimals):
    probs = choice_probs(3, n=300, decimals=decimals)
    confidences, correct = probs.confidences, probs.correct
    brier, nll = scores_of(probs)
    ranking = rank_by_confidence(confidences, correct)
    bandwidth = 0.07
    engine = ResampleEngine(ranking, brier, nll, 15, (0.5, 0.8, 0.37), bandwidth)
    if decimals == 1:
        assert len(ranking.mixed_groups) > 0  # the tie paths are exercised
    rng = np.random.default_rng(0)
    counts = np.stack([np.bincount(rng.integers(0, ranking.n, ranking.n), minlength=ranking.n) for _ in range(12)])
    counts[0] = 1  # the identity resample
    scalars, selective, smooth = engine.evaluate(counts)

    upper_edges = equal_mass_upper_edges(ranking.confidences, 15)  # fixed from the full sample
    for row, weights in enumerate(counts):
        c = np.repeat(ranking.confidences, weights)
        y = np.repeat(ranking.correct, weights)
        width = equal_width_calibration_errors(c, y, 15)
        mass = bin_sums(equal_mass_bin_indices(c, upper_edges), c, y, len(upper_edges))
        expected = {
            "accuracy": y.mean(), "mean_confidence": c.mean(),
            "ece": width.ece, "mce": width.mce, "rmsce": width.rmsce,
            "ece_equal_mass": calibration_errors_from_bin_sums(mass).ece,
            "ece_debiased": debiased_l2_from_bin_sums(mass),
            "brier": np.repeat(brier[ranking.order], weights).mean(),
            "nll": np.repeat(nll[ranking.order], weights).mean(),
            "auroc": roc_auc_score(y, c),
            "aurc": aurc(c, y),
        }
        for name, value in expected.items():
            assert scalars[name][row] == pytest.approx(value, rel=1e-6, abs=1e-7), (name, row)
        for column, coverage in enumerate((0.5, 0.8, 0.37)):
            expected_selective = selective_accuracy(c, y, coverage)
            assert selective[row, column] == pytest.approx(expected_selective, rel=1e-9), (coverage, row)
        assert smooth[row] == pytest.approx(smooth_ece_at(c, y, bandwidth), rel=1e-5, abs=1e-7), row


def test_engine_resamples_are_the_generic_bootstrap_resamples():
    probs = choice_probs(4, n=250)
    ranking = rank_by_confidence(probs.confidences, probs.correct)
    brier, nll = scores_of(probs)
    engine = ResampleEngine(ranking, brier, nll, 15, (0.5,), None)
    fast = engine.run(40, seed=9).scalars["ece"]
    slow = bootstrap_values(lambda idx: ece(ranking.confidences[idx], ranking.correct[idx]), ranking.n, 40, seed=9)
    np.testing.assert_allclose(fast, slow, rtol=1e-6, atol=1e-7)


def test_resamples_do_not_depend_on_the_block_size():
    whole = np.concatenate(list(resample_draw_blocks(50, 30, seed=1, rows_per_block=30)))
    pieces = np.concatenate(list(resample_draw_blocks(50, 30, seed=1, rows_per_block=7)))
    np.testing.assert_array_equal(whole, pieces)
    assert resample_counts(whole[0], 50).sum() == 50


def test_compute_metrics_point_estimates_match_the_plain_functions():
    probs = choice_probs(5, n=600)
    metrics = compute_metrics(probs, n_bootstrap=0)
    assert metrics.ece.value == pytest.approx(ece(probs.confidences, probs.correct))
    assert metrics.accuracy.value == pytest.approx(probs.correct.mean())
    assert metrics.auroc.value == pytest.approx(roc_auc_score(probs.correct, probs.confidences))
    expected = selective_accuracy(probs.confidences, probs.correct, 0.5)
    assert metrics.selective_accuracy[0.5].value == pytest.approx(expected)
    for estimate in (metrics.ece, metrics.auroc, metrics.selective_accuracy[0.8], metrics.smooth_ece):
        assert estimate.ci_low is None and estimate.ci_high is None
    assert metrics.n == 600 and metrics.n_bootstrap == 0


def test_intervals_are_seeded_and_contain_the_estimate_for_overconfident_data():
    probs = choice_probs(6, n=800, sharpness=3.0)
    first = compute_metrics(probs, n_bootstrap=300, seed=11)
    again = compute_metrics(probs, n_bootstrap=300, seed=11)
    other = compute_metrics(probs, n_bootstrap=300, seed=12)
    assert first.to_dict() == again.to_dict()
    assert first.ece.ci_low != other.ece.ci_low
    for name in ("accuracy", "mean_confidence", "ece", "ece_equal_mass", "ece_debiased", "smooth_ece", "rmsce",
                 "brier", "nll", "auroc", "aurc"):
        estimate = getattr(first, name)
        assert estimate.ci_low <= estimate.value <= estimate.ci_high, name
    for coverage, estimate in first.selective_accuracy.items():
        assert estimate.ci_low <= estimate.value <= estimate.ci_high, coverage


def test_to_dict_is_json_ready_and_names_every_metric():
    metrics = compute_metrics(choice_probs(7, n=200), n_bins=10, n_bootstrap=50)
    document = json.loads(json.dumps(metrics.to_dict(), allow_nan=False))
    for name in ("n", "accuracy", "ece", "ece_ci", "ece_equal_mass", "ece_debiased", "smooth_ece", "mce", "rmsce",
                 "brier", "nll", "auroc", "aurc", "mean_confidence", "selective_accuracy", "reliability"):
        assert name in document, name
    assert len(document["ece_ci"]) == 2 and document["ece_ci"][0] <= document["ece_ci"][1]
    assert set(document["selective_accuracy"]) == {"0.5", "0.8"} == set(document["selective_accuracy_ci"])
    reliability = document["reliability"]
    assert len(reliability["edges"]) == 11 and len(reliability["counts"]) == 10
    assert sum(reliability["counts"]) == 200
    assert all(a is None for a, c in zip(reliability["accuracy"], reliability["counts"]) if c == 0)


@pytest.mark.parametrize("all_correct", [True, False])
def test_one_class_gives_auroc_none_without_crashing(all_correct):
    probs = choice_probs(8, n=100)
    gold = probs.predictions if all_correct else (probs.predictions + 1) % 4
    probs = ChoiceProbs(probs.choice_probs, probs.offsets, gold, probs.predictions)
    metrics = compute_metrics(probs, n_bootstrap=30)
    assert metrics.auroc.value is None and metrics.auroc.ci_low is None and metrics.auroc.ci_high is None
    assert metrics.accuracy.value == (1.0 if all_correct else 0.0)
    document = metrics.to_dict()
    assert document["auroc"] is None and document["auroc_ci"] == [None, None]
    assert document["aurc"] == pytest.approx(0.0 if all_correct else 1.0)


def test_a_single_question_and_tiny_samples_work():
    probs = ChoiceScores.from_lists([[0.0, 1.0]], [1]).probabilities()
    metrics = compute_metrics(probs, n_bootstrap=20)
    assert metrics.ece.value == pytest.approx(1 - probs.confidences[0])
    assert metrics.ece.ci_low == metrics.ece.ci_high == metrics.ece.value
    assert metrics.auroc.value is None


def test_percentile_interval_ignores_undefined_resamples():
    assert percentile_interval(np.array([np.nan, np.nan])) == (None, None)
    low, high = percentile_interval(np.array([np.nan, *np.arange(101.0)]), 0.9)
    assert (low, high) == pytest.approx((5.0, 95.0))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_bins": 0}, "n_bins must be an integer >= 1; got 0"),
        ({"n_bootstrap": -1}, "n_bootstrap must be an integer >= 0; got -1"),
        ({"confidence_level": 1.0}, r"confidence_level must be in \(0, 1\); got 1.0"),
        ({"coverages": (0.5, 1.5)}, r"coverage must be in \(0, 1\]; got 1.5"),
    ],
)
def test_compute_metrics_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        compute_metrics(choice_probs(0, n=20), **kwargs)


def test_engine_rejects_counts_that_are_not_resamples():
    probs = choice_probs(1, n=30)
    brier, nll = scores_of(probs)
    engine = ResampleEngine(rank_by_confidence(probs.confidences, probs.correct), brier, nll, 15, (0.5,), None)
    with pytest.raises(ValueError, match="summing to 30"):
        engine.evaluate(np.ones((2, 30), dtype=np.int64) * 2)
