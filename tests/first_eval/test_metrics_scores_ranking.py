"""Brier, NLL, AUROC and selective metrics against scikit-learn, hand-worked values and brute force."""

import itertools

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from first_eval.metrics import (
    aurc,
    auroc,
    multiclass_brier,
    nll,
    per_question_brier,
    risk_coverage_curve,
    selective_accuracy,
)
from first_eval.metrics.proper_scores import NLL_EPS


def test_brier_and_nll_hand_worked_on_ragged_questions():
    choice_probs = np.array([0.7, 0.2, 0.1, 0.5, 0.5])
    offsets, gold = np.array([0, 3, 5]), np.array([0, 1])
    # q0: 0.3^2 + 0.2^2 + 0.1^2 = 0.14; q1: 0.5^2 + 0.5^2 = 0.5
    np.testing.assert_allclose(per_question_brier(choice_probs, offsets, gold), [0.14, 0.5])
    assert multiclass_brier(choice_probs, offsets, gold) == pytest.approx(0.32)
    assert nll(choice_probs, offsets, gold) == pytest.approx((-np.log(0.7) - np.log(0.5)) / 2)


@pytest.mark.parametrize("n_choices", [2, 4, 5])
def test_brier_and_nll_match_sklearn_with_fixed_choices(n_choices):
    rng = np.random.default_rng(n_choices)
    logits = rng.normal(0, 2, size=(400, n_choices))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    gold = rng.integers(0, n_choices, 400)
    offsets = np.arange(0, 400 * n_choices + 1, n_choices)
    labels = list(range(n_choices))
    expected_brier = brier_score_loss(gold, probs, labels=labels, scale_by_half=False)
    if n_choices == 2:  # sklearn's binary Brier scores only the positive class; ours sums over both choices
        expected_brier = 2 * brier_score_loss(gold, probs[:, 1], scale_by_half=True)
    assert multiclass_brier(probs.ravel(), offsets, gold) == pytest.approx(expected_brier, rel=1e-12)
    assert nll(probs.ravel(), offsets, gold) == pytest.approx(log_loss(gold, probs, labels=labels), rel=1e-12)


def test_nll_is_clipped_for_a_zero_gold_probability():
    value = nll(np.array([1.0, 0.0]), np.array([0, 2]), np.array([1]))
    assert value == pytest.approx(-np.log(NLL_EPS)) and np.isfinite(value)


def test_brier_of_a_one_hot_correct_answer_is_exactly_zero():
    assert multiclass_brier(np.array([0.0, 1.0, 0.0]), np.array([0, 3]), np.array([1])) == 0.0


@pytest.mark.parametrize(
    "choice_probs, offsets, gold, message",
    [
        ([0.5, 0.5], [0, 2], [2], "gold index 2 is outside 0..1"),
        ([0.5, 0.5], [0, 3], [0], "offsets must start at 0 and end at 2"),
        ([0.5, 1.5], [0, 2], [0], r"\[0, 1\]; got 1.5 at position 1"),
        ([0.5, 0.5], [0, 2], [0, 1], "2 gold indices for 1 questions"),
    ],
)
def test_proper_score_errors_quote_the_bad_value(choice_probs, offsets, gold, message):
    with pytest.raises(ValueError, match=message):
        multiclass_brier(choice_probs, offsets, gold)


@pytest.mark.parametrize("seed, decimals", [(0, None), (1, 1), (2, 2), (3, 0)])
def test_auroc_matches_sklearn_including_ties(seed, decimals):
    rng = np.random.default_rng(seed)
    confidences = rng.random(3000) ** 0.7
    if decimals is not None:
        confidences = np.round(confidences, decimals)  # heavy ties, some of them mixed right/wrong
    correct = rng.random(3000) < confidences
    assert auroc(confidences, correct) == pytest.approx(roc_auc_score(correct, confidences), rel=1e-12)


def test_auroc_hand_worked_and_undefined_cases():
    assert auroc([0.9, 0.8, 0.2], [1, 1, 0]) == 1.0
    assert auroc([0.9, 0.8, 0.2], [0, 0, 1]) == 0.0
    assert auroc([0.5, 0.5], [1, 0]) == 0.5  # a tie is half a pair
    assert auroc([0.9, 0.4, 0.7], [1, 1, 1]) is None
    assert auroc([0.9, 0.4, 0.7], [0, 0, 0]) is None


def test_aurc_and_selective_accuracy_hand_worked():
    # Most confident first: right, wrong, right, wrong -> risks 0, 1/2, 1/3, 1/2.
    confidences, correct = [0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]
    assert aurc(confidences, correct) == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 2) / 4)
    curve = risk_coverage_curve(confidences, correct)
    np.testing.assert_allclose(curve.coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve.risk, [0, 1 / 2, 1 / 3, 1 / 2])
    assert selective_accuracy(confidences, correct, 0.5) == pytest.approx(0.5)
    assert selective_accuracy(confidences, correct, 0.75) == pytest.approx(2 / 3)
    # 0.6 * 4 = 2.4 questions: the third (right) counts 0.4 -> 1 error in 2.4.
    assert selective_accuracy(confidences, correct, 0.6) == pytest.approx(1 - 1 / 2.4)
    assert selective_accuracy(confidences, correct, 1.0) == pytest.approx(0.5)


def naive_aurc(confidences, correct):
    """Distinct confidences: mean over k of errors among the top k, divided by k."""
    order = np.argsort(-np.asarray(confidences), kind="stable")
    errors = np.cumsum(~np.asarray(correct, dtype=bool)[order])
    return float(np.mean(errors / np.arange(1, len(order) + 1)))


def test_aurc_matches_the_textbook_formula_without_ties():
    rng = np.random.default_rng(5)
    confidences = rng.random(500)
    correct = rng.random(500) < confidences
    assert aurc(confidences, correct) == pytest.approx(naive_aurc(confidences, correct), rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_ties_give_the_average_over_all_orders_of_each_tie_group(seed):
    rng = np.random.default_rng(seed)
    confidences = rng.choice([0.3, 0.6, 0.9], size=7)
    correct = rng.random(7) < 0.6
    permutation_aurcs, permutation_selective = [], []
    for perm in itertools.permutations(range(7)):
        # Break ties by the permutation: add a tiny, order-only offset.
        order_key = np.array(perm) * 1e-6
        broken = confidences + order_key
        permutation_aurcs.append(naive_aurc(broken, correct))
        top = np.argsort(-broken, kind="stable")[:4]
        permutation_selective.append(correct[top].mean())
    assert aurc(confidences, correct) == pytest.approx(np.mean(permutation_aurcs), rel=1e-12)
    assert selective_accuracy(confidences, correct, 4 / 7) == pytest.approx(np.mean(permutation_selective), rel=1e-12)


def test_selective_accuracy_rejects_a_bad_coverage():
    with pytest.raises(ValueError, match=r"coverage must be in \(0, 1\]; got 0.0"):
        selective_accuracy([0.5], [1], 0.0)
