"""Paired differences between two models (first_eval.metrics.paired), checked against oracles:

- identities: identical models give exactly 0 with the interval [0, 0];
- each resample's difference equals the metric recomputed here on the explicitly resampled questions;
- coverage: on synthetic pairs with a planted difference, the interval covers the true (population) difference in
  about 95% of seeded repetitions; for two calibrated models of different sharpness the ECE interval seldom
  excludes 0 (the plug-in ECE's would most of the time); where the noise correction cannot remove the bias, the
  misses fall on the side of "no difference".
"""

from __future__ import annotations

import numpy as np
import pytest

from first_eval.metrics import ece, multiclass_brier, nll
from first_eval.metrics.paired import (
    PAIRED_METRICS,
    Delta,
    QuestionOutcomes,
    paired_deltas,
    unpaired_deltas,
    unpaired_from_intervals,
)


def two_choice_outcomes(confidences: np.ndarray, correct: np.ndarray, calibrated: np.ndarray | None = None,
                        n_bins: int = 15) -> QuestionOutcomes:
    """Two-choice questions: the chosen answer has probability ``confidences``; Brier and NLL by their formulas."""
    gold_prob = np.where(correct, confidences, 1.0 - confidences)
    return QuestionOutcomes(confidences, correct, 2.0 * (1.0 - gold_prob) ** 2, -np.log(gold_prob), calibrated, n_bins)


def planted_pair(rng: np.random.Generator, n: int, gap_a: float = 0.12, gap_b: float = 0.05, share: float = 0.6):
    """Model A over-confident by ``gap_a``, B by ``gap_b`` (P(correct | confidence c) = c - gap); both see the
    same questions (difficulty u) and their correctness shares the same uniform on a ``share`` of questions."""
    u = rng.random(n)
    shared, own_a, own_b = rng.random(n), rng.random(n), rng.random(n)
    together = rng.random(n) < share
    confidence_a, confidence_b = 0.6 + 0.35 * u, 0.55 + 0.3 * u + 0.05 * rng.random(n)
    correct_a = np.where(together, shared, own_a) < confidence_a - gap_a
    correct_b = np.where(together, shared, own_b) < confidence_b - gap_b
    # "calibrated" confidences, a stand-in for a recalibrated copy: A's gap shrunk to 0.4 gap_a, B's moved to +0.08
    return (two_choice_outcomes(confidence_a, correct_a, confidence_a - 0.6 * gap_a),
            two_choice_outcomes(confidence_b, correct_b, confidence_b + 0.08 - gap_b))


def population_difference(pair_factory, **kwargs) -> dict[str, float]:
    """The true difference of each metric: the plain metrics on two million questions (sampling error ~1e-4)."""
    a, b = pair_factory(np.random.default_rng(12345), 2_000_000, **kwargs)
    return {
        "accuracy": a.correct.mean() - b.correct.mean(),
        "mean_confidence": a.confidences.mean() - b.confidences.mean(),
        "brier": a.brier.mean() - b.brier.mean(),
        "nll": a.nll.mean() - b.nll.mean(),
        "ece": ece(a.confidences, a.correct, 15) - ece(b.confidences, b.correct, 15),
        "ece_calibrated": ece(a.calibrated_confidences, a.correct, 15) - ece(b.calibrated_confidences, b.correct, 15),
    }


def test_identical_models_differ_by_exactly_zero():
    rng = np.random.default_rng(0)
    model, _ = planted_pair(rng, 300)
    deltas = paired_deltas(model, model, n_resamples=300, seed=4)
    assert set(deltas) == set(PAIRED_METRICS)
    for metric, delta in deltas.items():
        assert delta.delta == 0.0 and delta.ci == (0.0, 0.0), metric
        assert delta.paired and delta.n == 300 and not delta.excludes_zero
    assert deltas["ece"].plugin == 0.0


def test_point_differences_equal_the_plain_metrics():
    a, b = planted_pair(np.random.default_rng(1), 400)
    deltas = paired_deltas(a, b, n_resamples=0)
    assert deltas["accuracy"].delta == pytest.approx(a.correct.mean() - b.correct.mean(), abs=1e-12)
    assert deltas["mean_confidence"].delta == pytest.approx(a.confidences.mean() - b.confidences.mean(), abs=1e-12)
    # Brier and NLL through the library's own ragged scores of the same two-choice questions
    def ragged(outcomes):
        chosen = np.stack([outcomes.confidences, 1 - outcomes.confidences], axis=1).ravel()
        gold = np.where(outcomes.correct, 0, 1)
        return chosen, np.arange(0, 2 * outcomes.n + 1, 2), gold
    assert deltas["brier"].delta == pytest.approx(multiclass_brier(*ragged(a)) - multiclass_brier(*ragged(b)), abs=1e-12)
    assert deltas["nll"].delta == pytest.approx(nll(*ragged(a)) - nll(*ragged(b)), abs=1e-12)
    assert deltas["ece"].plugin == pytest.approx(ece(a.confidences, a.correct) - ece(b.confidences, b.correct), abs=1e-12)
    assert deltas["ece"].ci == (None, None) and not deltas["ece"].excludes_zero


def noise_corrected_ece(confidences: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """The corrected ECE written out bin by bin: sum_b n_b/n sqrt(max(gap_b^2 - acc_b (1 - acc_b) / (n_b - 1), 0))."""
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for b in range(n_bins):
        inside = (confidences >= edges[b]) & ((confidences < edges[b + 1]) if b < n_bins - 1 else (confidences <= 1))
        n_b = inside.sum()
        if n_b == 0:
            continue
        gap = confidences[inside].mean() - correct[inside].mean()
        accuracy = correct[inside].mean()
        noise = accuracy * (1 - accuracy) / (n_b - 1) if n_b > 1 else 0.0
        total += n_b * np.sqrt(max(gap * gap - noise, 0.0))
    return total / len(confidences)


def test_each_resample_is_the_metric_of_the_resampled_questions():
    """The interval is the percentile interval of differences recomputed here question by question."""
    a, b = planted_pair(np.random.default_rng(2), 150)
    n_resamples, seed = 200, 9
    draws = np.random.default_rng(seed).integers(0, a.n, size=(n_resamples, a.n))  # bootstrap.py's stream
    values = {metric: [] for metric in ("accuracy", "brier", "ece")}
    for index in draws:
        values["accuracy"].append(a.correct[index].mean() - b.correct[index].mean())
        values["brier"].append(a.brier[index].mean() - b.brier[index].mean())
        values["ece"].append(noise_corrected_ece(a.confidences[index], a.correct[index].astype(float))
                             - noise_corrected_ece(b.confidences[index], b.correct[index].astype(float)))
    deltas = paired_deltas(a, b, n_resamples=n_resamples, seed=seed)
    for metric in ("accuracy", "brier"):
        assert deltas[metric].ci == pytest.approx(tuple(np.quantile(values[metric], [0.025, 0.975])), abs=1e-12)
    point = noise_corrected_ece(a.confidences, a.correct.astype(float)) - noise_corrected_ece(b.confidences, b.correct.astype(float))
    assert deltas["ece"].delta == pytest.approx(point, abs=1e-12)
    shift = point - np.median(values["ece"])  # the ECE interval is centred on the estimate
    assert deltas["ece"].ci == pytest.approx(tuple(np.quantile(values["ece"], [0.025, 0.975]) + shift), abs=1e-12)


COVERAGE_REPS = 1000


def coverage(pair_factory, truth, n: int = 300, reps: int = COVERAGE_REPS, **kwargs):
    """Per metric: (share of intervals covering the truth, misses below it, misses above it)."""
    rng = np.random.default_rng(2024)
    counts = {metric: [0, 0, 0] for metric in truth}
    for rep in range(reps):
        a, b = pair_factory(rng, n, **kwargs)
        deltas = paired_deltas(a, b, n_resamples=400, seed=rep)
        for metric, true in truth.items():
            low, high = deltas[metric].ci
            counts[metric][0] += low <= true <= high
            counts[metric][1] += high < true
            counts[metric][2] += low > true
    return {metric: (hit / reps, below, above) for metric, (hit, below, above) in counts.items()}


def test_paired_interval_covers_a_planted_difference_about_95_percent_of_the_time():
    truth = population_difference(planted_pair)
    assert truth["ece"] == pytest.approx(0.07, abs=0.01) and truth["accuracy"] < -0.015  # the planted differences
    measured = coverage(planted_pair, truth)
    print("coverage (share, misses below, misses above):", measured)
    for metric, (share, _, _) in measured.items():
        # 1000 repetitions: a true 95% lands in [0.93, 0.97] with probability ~0.995 (measured: 0.944 to 0.950)
        assert 0.93 <= share <= 0.97, (metric, share)


def calibrated_pair(rng: np.random.Generator, n: int, gap_a: float = 0.0):
    """Both models calibrated (A off by ``gap_a``), A sharp (confidences 0.9-0.99), B diffuse (0.5-0.8)."""
    u, v = rng.random(n), rng.random(n)
    confidence_a, confidence_b = 0.9 + 0.09 * u, 0.5 + 0.3 * u
    return (two_choice_outcomes(confidence_a, v < confidence_a - gap_a, confidence_a),
            two_choice_outcomes(confidence_b, v < confidence_b, confidence_b))


def test_two_calibrated_models_are_seldom_called_different():
    """The plug-in ECE of the diffuse model is inflated by its noise, so the plain ECE difference sits well below 0
    in most repetitions. The noise-corrected interval excludes 0 about as often as chance allows."""
    rng = np.random.default_rng(7)
    corrected_wrong, plugin_wrong, reps = 0, 0, 200
    for rep in range(reps):
        a, b = calibrated_pair(rng, 400)
        delta = paired_deltas(a, b, n_resamples=400, seed=rep)["ece"]
        corrected_wrong += delta.excludes_zero
        plugin_wrong += delta.plugin < -0.02  # the plain difference alone, far below 0
    print(f"calibrated pair: corrected ECE interval excludes 0 in {corrected_wrong}/{reps}, "
          f"plain difference below -0.02 in {plugin_wrong}/{reps}")
    assert corrected_wrong / reps <= 0.10
    assert plugin_wrong / reps >= 0.5


def test_misses_of_the_ece_interval_are_on_the_side_of_no_difference():
    """B calibrated, A over-confident by 0.08: the corrected ECE of B keeps a little noise and A's large gap is
    slightly under-estimated, so an interval that misses the truth lies between it and 0, never beyond it."""
    truth = population_difference(calibrated_pair, gap_a=0.08)
    measured = coverage(calibrated_pair, {"ece": truth["ece"]}, n=400, reps=150, gap_a=0.08)
    share, below, above = measured["ece"]
    print(f"one calibrated model: ECE coverage {share:.3f}, misses toward 0: {below}, beyond the truth: {above}")
    assert truth["ece"] > 0.05 and above <= 2 and share >= 0.5


def test_unpaired_intervals_are_wider_and_never_zero_for_identical_data():
    a, b = planted_pair(np.random.default_rng(3), 300)
    paired = paired_deltas(a, b, n_resamples=300, seed=1)
    unpaired = unpaired_deltas(a, b, n_resamples=300, seed=1)
    assert all(not d.paired and d.n == 300 for d in unpaired.values())
    for metric in ("accuracy", "brier", "nll"):
        assert unpaired[metric].delta == pytest.approx(paired[metric].delta, abs=1e-12)
        width = lambda d: d.ci[1] - d.ci[0]
        assert width(unpaired[metric]) > width(paired[metric]), metric
    same = unpaired_deltas(a, a, n_resamples=300, seed=1)
    assert same["accuracy"].delta == 0.0 and same["accuracy"].ci[0] < 0 < same["accuracy"].ci[1]
    # different numbers of questions are fine unpaired, refused paired
    unpaired_deltas(a.subset(np.arange(200)), b, n_resamples=50)
    with pytest.raises(ValueError, match="same questions"):
        paired_deltas(a.subset(np.arange(200)), b)


def test_unpaired_from_two_reported_intervals():
    delta = unpaired_from_intervals(0.30, 0.10, [0.26, 0.34], [0.07, 0.13], n=400)
    assert delta.delta == pytest.approx(0.20)
    assert delta.ci == pytest.approx((0.20 - 0.05, 0.20 + 0.05))  # half-widths 0.04 and 0.03 add in quadrature
    assert delta.excludes_zero and not delta.paired
    assert unpaired_from_intervals(0.3, 0.1, None, [0.07, 0.13], n=4).ci == (None, None)
    assert unpaired_from_intervals(None, 0.1, None, None, n=4) == Delta(None, (None, None), False, 4)


def test_float_rounding_is_not_a_difference():
    assert not Delta(1e-17, (1e-18, 5e-17), True, 10).excludes_zero
    assert Delta(0.01, (0.001, 0.02), True, 10).excludes_zero
