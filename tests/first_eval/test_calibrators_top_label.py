"""Platt scaling and isotonic regression of the top-label confidence, against scikit-learn and scipy."""

import json

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit, logit, softmax
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from first_eval.calibrators import (
    CALIBRATORS,
    CONFIDENCE_EPS,
    CalibratorCannotFit,
    IsotonicCalibration,
    PlattScaling,
    calibrator_from_dict,
    top_label_logits,
    top_label_probs,
)
from first_eval.scores import ChoiceScores, ragged_argmax


def overconfident_scores(n: int, sharpness: float = 3.0, seed: int = 0) -> ChoiceScores:
    """gold ~ softmax(z), scores z * sharpness: over-confident at T=1, both right and wrong answers."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(2, 6, size=n)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    logits = rng.normal(0.0, 1.5, size=offsets[-1])
    gold = ragged_argmax(logits + rng.gumbel(size=offsets[-1]), offsets)
    return ChoiceScores(logits * sharpness, offsets, gold)


def per_question(scores: ChoiceScores):
    """(confidence, prediction, probabilities) of each question, with scipy's softmax."""
    for i in range(scores.n_questions):
        probs = softmax(scores.choice_scores[scores.offsets[i]:scores.offsets[i + 1]])
        yield probs.max(), int(np.argmax(probs)), probs


# --- the shared top-label redistribution ------------------------------------------------------------


def test_redistribution_keeps_prediction_and_other_choices_proportions():
    scores = overconfident_scores(200, seed=1)
    calibrated = np.random.default_rng(2).uniform(0.0, 1.0, size=200)
    probs = top_label_probs(scores, calibrated)
    for i, (_, prediction, original) in enumerate(per_question(scores)):
        got = probs.choice_probs[probs.offsets[i]:probs.offsets[i + 1]]
        target = np.clip(calibrated[i], CONFIDENCE_EPS, 1 - CONFIDENCE_EPS)
        assert probs.predictions[i] == prediction
        assert got[prediction] == pytest.approx(target, rel=1e-12)
        others = np.delete(np.arange(len(got)), prediction)
        np.testing.assert_allclose(got[others], (1 - target) * original[others] / original[others].sum(), rtol=1e-9)
        assert got.sum() == pytest.approx(1.0, abs=1e-12)


def test_redistribution_clips_and_survives_underflowing_alternatives():
    # At T=1 the alternatives' probabilities are exp(-1000) = 0.0 in float64; their relative shares are not.
    scores = ChoiceScores.from_lists([[0.0, -1000.0, -1001.0], [5.0, 4.0]], [1, 0])
    probs = top_label_probs(scores, np.array([1.0, 0.0]))
    first = probs.choice_probs[:3]
    assert first[0] == 1 - CONFIDENCE_EPS
    np.testing.assert_allclose(first[1:], CONFIDENCE_EPS * softmax([-1000.0, -1001.0]), rtol=1e-9)
    assert probs.choice_probs[3] == CONFIDENCE_EPS and probs.choice_probs[4] == pytest.approx(1 - CONFIDENCE_EPS)
    assert np.all(probs.choice_probs > 0)
    # the logit stays finite although the confidence rounds to 1.0: 1000 - log(1 + e^-1)
    assert top_label_logits(scores)[0] == pytest.approx(1000.0 - np.log1p(np.exp(-1.0)), rel=1e-15)


def test_top_label_logits_equal_scipy_logit_of_the_confidence():
    scores = overconfident_scores(300, sharpness=1.0, seed=3)
    confidences = np.array([c for c, _, _ in per_question(scores)])
    np.testing.assert_allclose(top_label_logits(scores), logit(confidences), rtol=1e-9, atol=1e-12)


# --- Platt scaling -------------------------------------------------------------------------------


def test_platt_matches_unpenalised_logistic_regression_fit_by_sklearn_and_scipy():
    scores = overconfident_scores(3_000, seed=4)
    confidences = np.array([c for c, _, _ in per_question(scores)])
    correct = np.array([p == g for (_, p, _), g in zip(per_question(scores), scores.gold)])
    features = logit(confidences)

    reference = LogisticRegression(C=np.inf, max_iter=10_000).fit(features[:, None], correct)

    def negative_log_likelihood(params):
        z = params[0] * features + params[1]
        return np.sum(np.logaddexp(0.0, z) - correct * z)

    by_scipy = minimize(negative_log_likelihood, x0=[1.0, 0.0], method="BFGS", options={"gtol": 1e-10}).x

    platt = PlattScaling().fit(scores)
    assert platt.slope_ == pytest.approx(by_scipy[0], rel=1e-3)
    assert platt.intercept_ == pytest.approx(by_scipy[1], rel=1e-3, abs=1e-4)
    np.testing.assert_allclose(platt.predict_confidences(scores), reference.predict_proba(features[:, None])[:, 1],
                               atol=1e-4)
    transformed = platt.transform(scores)
    np.testing.assert_allclose(transformed.confidences, expit(platt.slope_ * features + platt.intercept_), rtol=1e-9)
    # over-confident scores: Platt lowers the mean confidence towards the accuracy
    assert abs(transformed.confidences.mean() - correct.mean()) < abs(confidences.mean() - correct.mean())


@pytest.mark.parametrize("gold_is_top, word", [(True, "correct"), (False, "wrong")])
def test_platt_cannot_fit_one_class(gold_is_top, word):
    score_lists = [[0.0, -1.0 - 0.1 * i] for i in range(37)]
    scores = ChoiceScores.from_lists(score_lists, [0 if gold_is_top else 1] * 37)
    with pytest.raises(CalibratorCannotFit, match=f"needs both correct and wrong answers; all 37 are {word}"):
        PlattScaling().fit(scores)


def test_platt_perfectly_separated_classes_give_a_finite_fit():
    # right answers all more confident than wrong ones: the unpenalised MLE slope is infinite
    score_lists = [[0.0, -3.0 - i] for i in range(20)] + [[0.0, -0.1 * (i + 1)] for i in range(10)]
    scores = ChoiceScores.from_lists(score_lists, [0] * 20 + [1] * 10)
    platt = PlattScaling().fit(scores)
    assert np.isfinite([platt.slope_, platt.intercept_]).all() and platt.slope_ > 0
    assert np.isfinite(platt.transform(scores).choice_probs).all()


def test_platt_json_round_trip_is_identical():
    scores = overconfident_scores(500, seed=5)
    fitted = PlattScaling().fit(scores)
    document = json.loads(json.dumps(fitted.to_dict()))
    assert document["kind"] == "platt" and document["n_fit"] == 500 and 0 < document["n_correct"] < 500
    for rebuilt in (PlattScaling.from_dict(document), calibrator_from_dict(document)):
        np.testing.assert_array_equal(rebuilt.transform(scores).choice_probs, fitted.transform(scores).choice_probs)


# --- isotonic regression -----------------------------------------------------------------------------


def test_isotonic_matches_sklearn_on_training_and_new_questions():
    training = overconfident_scores(2_000, seed=6)
    fresh = overconfident_scores(500, sharpness=6.0, seed=7)  # wider confidences: some fall outside the fit
    x_train = np.array([c for c, _, _ in per_question(training)])
    y_train = np.array([p == g for (_, p, _), g in zip(per_question(training), training.gold)], dtype=float)
    reference = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(x_train, y_train)

    isotonic = IsotonicCalibration().fit(training)
    for scores in (training, fresh):
        x = np.array([c for c, _, _ in per_question(scores)])
        expected = np.clip(reference.predict(x), CONFIDENCE_EPS, 1 - CONFIDENCE_EPS)
        np.testing.assert_allclose(isotonic.transform(scores).confidences, expected, rtol=1e-12, atol=1e-15)
    # scipy's softmax and ChoiceScores' may differ in the last bit of a confidence
    np.testing.assert_allclose(isotonic.x_thresholds_, reference.X_thresholds_, rtol=1e-12)
    np.testing.assert_allclose(isotonic.y_thresholds_, reference.y_thresholds_, rtol=1e-12)


def test_isotonic_is_non_decreasing_even_when_confidence_predicts_errors():
    """A model whose confident answers are its wrong ones: the calibrated confidence still never falls as the raw
    one rises (isotonic, not "auto"-directed: a decreasing map would reorder the questions' confidences). The
    increasing fit pools everything into one block at the overall accuracy (pool-adjacent-violators by hand)."""
    raw = np.linspace(0.55, 0.95, 40)
    correct = raw < 0.7  # the 15 least confident questions are right, the rest wrong
    # 2 choices with top-label confidence c > 1/2: scores [logit(c), 0]; gold = 0 when correct
    scores = ChoiceScores.from_lists([[float(logit(c)), 0.0] for c in raw], np.where(correct, 0, 1))
    calibrated = IsotonicCalibration().fit(scores).transform(scores).confidences
    assert correct.sum() == 15 and (np.diff(calibrated) >= 0).all()
    np.testing.assert_allclose(calibrated, np.full(40, 15 / 40), rtol=1e-12)


def test_isotonic_json_round_trip_is_identical():
    scores = overconfident_scores(800, seed=8)
    fitted = IsotonicCalibration().fit(scores)
    document = json.loads(json.dumps(fitted.to_dict()))
    assert document["kind"] == "isotonic" and len(document["x_thresholds"]) == len(fitted.x_thresholds_)
    for rebuilt in (IsotonicCalibration.from_dict(document), calibrator_from_dict(document)):
        np.testing.assert_array_equal(rebuilt.transform(scores).choice_probs, fitted.transform(scores).choice_probs)


@pytest.mark.parametrize("gold_is_top, constant", [(True, 1 - CONFIDENCE_EPS), (False, CONFIDENCE_EPS)])
def test_isotonic_one_class_fits_a_clipped_constant(gold_is_top, constant):
    scores = ChoiceScores.from_lists([[0.0, -0.5 * (i + 1)] for i in range(12)], [0 if gold_is_top else 1] * 12)
    probs = IsotonicCalibration().fit(scores).transform(scores)
    np.testing.assert_array_equal(probs.confidences, np.full(12, constant))
    assert np.isfinite(np.log(probs.choice_probs)).all()


def test_isotonic_from_dict_rejects_bad_thresholds():
    with pytest.raises(ValueError, match="increase strictly; got 0.5 then 0.5"):
        IsotonicCalibration.from_dict({"kind": "isotonic", "x_thresholds": [0.5, 0.5], "y_thresholds": [0.1, 0.2]})
    with pytest.raises(ValueError, match="non-decreasing"):
        IsotonicCalibration.from_dict({"kind": "isotonic", "x_thresholds": [0.4, 0.5], "y_thresholds": [0.3, 0.2]})
    with pytest.raises(ValueError, match="lacks 'y_thresholds'"):
        IsotonicCalibration.from_dict({"kind": "isotonic", "x_thresholds": [0.4]})


# --- the registry --------------------------------------------------------------------------------------


def test_registry_names_and_unknown_kind():
    assert list(CALIBRATORS) == ["temperature", "platt", "isotonic"]
    assert all(CALIBRATORS[name]().name == name for name in CALIBRATORS)
    with pytest.raises(ValueError, match=r"unknown calibrator kind 'plat'\. Did you mean 'platt'\?"):
        calibrator_from_dict({"kind": "plat", "slope": 1.0, "intercept": 0.0})
    with pytest.raises(ValueError, match="not fitted"):
        PlattScaling().to_dict()
