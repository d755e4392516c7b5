"""Cross-fitting: no question is scored by a calibrator that saw it; order, determinism, errors."""

import json
import warnings

import numpy as np
import pytest
from scipy.special import softmax

from first_eval.calibrators import (
    CalibratorCannotFit,
    IsotonicCalibration,
    TemperatureScaling,
    assign_folds,
    cross_fit,
    top_label_probs,
)
from first_eval.scores import ChoiceScores, ragged_argmax


def overconfident_scores(n: int, sharpness: float = 3.0, seed: int = 0) -> ChoiceScores:
    """gold ~ softmax(z), scores z * sharpness (2-5 choices); every question's scores are distinct."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(2, 6, size=n)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    logits = rng.normal(0.0, 1.5, size=offsets[-1])
    gold = ragged_argmax(logits + rng.gumbel(size=offsets[-1]), offsets)
    return ChoiceScores(logits * sharpness, offsets, gold)


def question_keys(scores: ChoiceScores) -> list[tuple[float, ...]]:
    return [tuple(scores.choice_scores[scores.offsets[i]:scores.offsets[i + 1]]) for i in range(scores.n_questions)]


class MembershipLeak:
    """A calibrator whose output says whether it saw the question: confidence 0.9 if seen, else 0.3."""

    name = "membership-leak"

    def fit(self, scores):
        self.seen_ = set(question_keys(scores))
        return self

    def transform(self, scores):
        seen = np.array([key in self.seen_ for key in question_keys(scores)])
        return top_label_probs(scores, np.where(seen, 0.9, 0.3))

    def to_dict(self):
        return {"kind": self.name, "n_seen": len(self.seen_)}


def test_no_question_is_scored_by_a_calibrator_that_saw_it():
    scores = overconfident_scores(203, seed=1)
    # the detector works: fit on everything, every question is "seen"
    assert np.allclose(MembershipLeak().fit(scores).transform(scores).confidences, 0.9)
    result = cross_fit(MembershipLeak, scores, n_folds=5, seed=3)
    np.testing.assert_allclose(result.probs.confidences, 0.3)
    assert result.name == "membership-leak"
    assert [d["n_seen"] for d in result.fold_calibrators] == [
        int((result.fold_ids != k).sum()) for k in range(5)
    ]


@pytest.mark.parametrize("calibrator", [TemperatureScaling, IsotonicCalibration])
def test_each_fold_equals_a_calibrator_fit_on_the_other_folds(calibrator):
    scores = overconfident_scores(500, seed=2)
    result = cross_fit(calibrator.name, scores, n_folds=4, seed=7)
    sizes = np.bincount(result.fold_ids, minlength=4)
    assert sizes.sum() == 500 and sizes.max() - sizes.min() <= 1
    for fold in range(4):
        held_out = np.flatnonzero(result.fold_ids == fold)
        fitted = calibrator().fit(scores.subset(np.flatnonzero(result.fold_ids != fold)))
        expected = fitted.transform(scores.subset(held_out))
        got = result.probs.subset(held_out)
        np.testing.assert_array_equal(got.choice_probs, expected.choice_probs)
        np.testing.assert_array_equal(got.predictions, expected.predictions)
        assert result.fold_calibrators[fold] == fitted.to_dict()


def test_output_is_in_the_input_order():
    scores = overconfident_scores(120, seed=3)
    result = cross_fit("temperature", scores, n_folds=3, seed=0)
    temperatures = result.fold_temperatures
    np.testing.assert_array_equal(result.probs.gold, scores.gold)
    np.testing.assert_array_equal(result.probs.offsets, scores.offsets)
    for i in range(scores.n_questions):
        segment = scores.choice_scores[scores.offsets[i]:scores.offsets[i + 1]]
        expected = softmax(segment / temperatures[result.fold_ids[i]])
        np.testing.assert_allclose(result.probs.choice_probs[scores.offsets[i]:scores.offsets[i + 1]], expected,
                                   rtol=1e-12)
        assert result.probs.predictions[i] == int(np.argmax(segment))


def test_deterministic_for_a_seed():
    scores = overconfident_scores(300, seed=4)
    first = cross_fit("isotonic", scores, n_folds=5, seed=11)
    again = cross_fit("isotonic", scores, n_folds=5, seed=11)
    other = cross_fit("isotonic", scores, n_folds=5, seed=12)
    np.testing.assert_array_equal(first.fold_ids, again.fold_ids)
    np.testing.assert_array_equal(first.probs.choice_probs, again.probs.choice_probs)
    assert first.fold_calibrators == again.fold_calibrators
    assert not np.array_equal(first.fold_ids, other.fold_ids)


def test_folds_are_stratified_on_correctness_when_both_classes_allow_it():
    scores = overconfident_scores(400, seed=5)
    correct = scores.probabilities().correct
    result = cross_fit("platt", scores, n_folds=5, seed=0)
    assert result.stratified
    per_fold = np.bincount(result.fold_ids, weights=correct, minlength=5)
    assert per_fold.max() - per_fold.min() <= 1


def test_exactly_n_folds_wrong_answers_still_stratify_one_per_fold():
    """Stratified when both classes number *at least* n_folds: 5 wrong answers and 5 folds give one wrong answer
    per fold, so every training part holds both classes; 4 wrong answers give a plain KFold."""
    assert assign_folds(np.arange(60) >= 4, 5, seed=0)[1] is False
    fold_ids, stratified = assign_folds(np.arange(60) >= 5, 5, seed=0)  # questions 0..4 wrong
    assert stratified is True
    assert np.bincount(fold_ids[:5], minlength=5).tolist() == [1] * 5
    scores = ChoiceScores.from_lists([[0.0, -1.0 - 0.05 * i] for i in range(60)], [1] * 5 + [0] * 55)
    result = cross_fit("platt", scores, n_folds=5, seed=0)
    assert result.stratified and np.array_equal(result.fold_ids, fold_ids)


def test_too_few_questions_for_the_folds():
    scores = overconfident_scores(3, seed=6)
    with pytest.raises(ValueError, match=r"3 questions but --folds 5"):
        cross_fit("temperature", scores, n_folds=5)
    with pytest.raises(ValueError, match=r"--folds >= 2.*got 1"):
        cross_fit("temperature", scores, n_folds=1)
    with pytest.raises(ValueError, match=r"unknown calibrator 'isotonc'\. Did you mean 'isotonic'\?"):
        cross_fit("isotonc", scores, n_folds=2)


def test_a_fold_that_cannot_be_fit_raises_with_the_fold_named():
    # 9 right answers and 1 wrong: the fold holding the wrong one leaves an all-correct training part
    score_lists = [[0.0, -1.0 - 0.1 * i] for i in range(10)]
    scores = ChoiceScores.from_lists(score_lists, [0] * 9 + [1])
    with pytest.raises(CalibratorCannotFit, match=r"platt: fold \d of 5 .* 8 training questions: .*all 8 are correct"):
        cross_fit("platt", scores, n_folds=5, seed=0)


def test_result_dict_is_json_ready_and_fold_temperatures_need_temperature():
    scores = overconfident_scores(200, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an interior optimum in every fold: no at-bound warning
        result = cross_fit("temperature", scores, n_folds=5, seed=1)
    document = json.loads(json.dumps(result.to_dict()))
    assert document["n_folds"] == 5 and sum(document["fold_sizes"]) == 200
    assert all(abs(t - 3.0) < 1.5 for t in result.fold_temperatures)
    with pytest.raises(ValueError, match="used 'isotonic'"):
        _ = cross_fit("isotonic", scores, n_folds=5).fold_temperatures
