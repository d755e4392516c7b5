import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import log_softmax

from first_eval.scores import ChoiceScores, apply_score_mode, ragged_argmax


def random_scores(seed: int, n: int = 50) -> tuple[list[list[float]], list[int]]:
    rng = np.random.default_rng(seed)
    lists = [list(rng.normal(-5, 3, size=int(rng.integers(2, 6)))) for _ in range(n)]
    gold = [int(rng.integers(0, len(s))) for s in lists]
    return lists, gold


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5, 3000.0])
def test_probabilities_match_scipy_per_question(temperature):
    lists, gold = random_scores(0)
    scores = ChoiceScores.from_lists(lists, gold)
    probs = scores.probabilities(temperature)
    for i, s in enumerate(lists):
        expected = np.exp(log_softmax(np.asarray(s) / temperature))
        got = probs.choice_probs[probs.offsets[i]:probs.offsets[i + 1]]
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
        assert probs.predictions[i] == int(np.argmax(s))
        assert probs.confidences[i] == pytest.approx(expected.max())
        assert probs.correct[i] == (np.argmax(s) == gold[i])


def test_argmax_ties_pick_lowest_index_like_numpy():
    values = np.array([1.0, 3.0, 3.0, 0.0, 0.0, 2.0, 2.0, 2.0])
    offsets = np.array([0, 3, 5, 8])
    assert ragged_argmax(values, offsets).tolist() == [1, 0, 0]


@given(st.lists(st.lists(st.floats(-1e4, 1e4), min_size=2, max_size=6), min_size=1, max_size=30), st.floats(0.01, 100))
@settings(max_examples=60, deadline=None)
def test_each_question_sums_to_one_and_temperature_keeps_predictions(lists, temperature):
    scores = ChoiceScores.from_lists(lists, [0] * len(lists))
    probs = scores.probabilities(temperature)
    sums = np.add.reduceat(probs.choice_probs, probs.offsets[:-1])
    np.testing.assert_allclose(sums, 1.0, rtol=1e-9)
    np.testing.assert_array_equal(probs.predictions, scores.probabilities(1.0).predictions)


def test_subset_keeps_questions_in_order():
    lists, gold = random_scores(1, n=10)
    scores = ChoiceScores.from_lists(lists, gold)
    sub = scores.subset(np.array([7, 2, 2]))
    assert sub.n_questions == 3
    np.testing.assert_array_equal(sub.choice_scores[: len(lists[7])], lists[7])
    assert sub.gold.tolist() == [gold[7], gold[2], gold[2]]


@pytest.mark.parametrize(
    "lists, gold, message",
    [
        ([[1.0]], [0], "at least 2"),
        ([[1.0, float("nan")]], [0], "non-finite"),
        ([[1.0, 2.0]], [2], "gold index 2 is outside 0..1"),
        ([[1.0, 2.0]], [-1], "gold index -1"),
    ],
)
def test_invalid_scores_are_rejected_with_the_bad_value(lists, gold, message):
    with pytest.raises(ValueError, match=message):
        ChoiceScores.from_lists(lists, gold)


def test_negative_temperature_is_rejected():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        ChoiceScores.from_lists([[0.0, 1.0]], [0]).probabilities(-1.0)


def test_char_norm_divides_by_length():
    np.testing.assert_allclose(apply_score_mode([-10.0, -6.0], [5, 2], "char-norm"), [-2.0, -3.0])
    with pytest.raises(ValueError, match="unknown score mode 'bytes'"):
        apply_score_mode([-1.0], [1], "bytes")
