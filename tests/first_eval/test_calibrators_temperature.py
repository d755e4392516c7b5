"""Temperature scaling against planted temperatures, brute-force NLL oracles and degenerate data."""

import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import log_softmax, softmax

from first_eval.calibrators import (
    CalibratorCannotFit,
    TemperatureAtBoundWarning,
    TemperatureScaling,
    calibrator_from_dict,
)
from first_eval.scores import ChoiceScores, ragged_argmax


def planted_scores(n: int, true_temperature: float, seed: int = 0) -> ChoiceScores:
    """Logits z (2-5 choices), gold ~ softmax(z) (Gumbel-max), scores z * T: the NLL-optimal T is T_true."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(2, 6, size=n)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    logits = rng.normal(0.0, 1.5, size=offsets[-1])
    gold = ragged_argmax(logits + rng.gumbel(size=offsets[-1]), offsets)
    return ChoiceScores(logits * true_temperature, offsets, gold)


def padded(scores: ChoiceScores) -> np.ndarray:
    """(n, max_choices) scores, -inf where a question has no such choice."""
    counts = scores.n_choices
    table = np.full((scores.n_questions, counts.max()), -np.inf)
    column = np.arange(len(scores.choice_scores)) - np.repeat(scores.offsets[:-1], counts)
    table[np.repeat(np.arange(scores.n_questions), counts), column] = scores.choice_scores
    return table


def padded_probs(probs) -> np.ndarray:
    """(n, max_choices) probabilities of a ChoiceProbs, 0 where a question has no such choice."""
    counts = np.diff(probs.offsets)
    table = np.zeros((len(counts), counts.max()))
    column = np.arange(len(probs.choice_probs)) - np.repeat(probs.offsets[:-1], counts)
    table[np.repeat(np.arange(len(counts)), counts), column] = probs.choice_probs
    return table


def mean_nll(scores: ChoiceScores, temperature: float) -> float:
    """Independent mean gold NLL with scipy's log_softmax on the padded table."""
    log_probs = log_softmax(padded(scores) / temperature, axis=1)
    return float(-log_probs[np.arange(scores.n_questions), scores.gold].mean())


@pytest.mark.parametrize("true_temperature", [0.5, 2.0, 5.0])
def test_recovers_planted_temperature(true_temperature):
    scores = planted_scores(20_000, true_temperature, seed=1)
    fitted = TemperatureScaling().fit(scores)
    assert fitted.temperature_ == pytest.approx(true_temperature, rel=0.03)
    assert fitted.at_bound_ is None


def test_recovers_a_temperature_in_the_thousands():
    # summed log-likelihoods of long answers: the NLL-optimal T on real tasks can be ~3000
    scores = planted_scores(5_000, 3000.0, seed=2)
    assert TemperatureScaling().fit(scores).temperature_ == pytest.approx(3000.0, rel=0.05)


def test_matches_torch_lbfgs_on_a_padded_cross_entropy():
    torch = pytest.importorskip("torch")
    scores = planted_scores(3_000, 2.5, seed=3)
    table = padded(scores)
    padding = torch.tensor(np.isinf(table))  # (n, max_choices) no such choice
    logits = torch.tensor(np.where(np.isinf(table), 0.0, table), dtype=torch.float64)
    gold = torch.tensor(scores.gold)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-15,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        scaled = (logits / log_t.exp()).masked_fill(padding, -torch.inf)
        loss = torch.nn.functional.cross_entropy(scaled, gold)
        loss.backward()
        return loss

    optimizer.step(closure)
    fitted = TemperatureScaling().fit(scores)
    assert fitted.temperature_ == pytest.approx(float(log_t.detach().exp()), rel=1e-5)
    assert fitted.nll_ == pytest.approx(float(closure().detach()), rel=1e-10)


def test_is_the_minimum_of_a_scipy_grid_search():
    scores = planted_scores(400, 0.7, seed=4)
    fitted = TemperatureScaling().fit(scores)
    grid = np.exp(np.linspace(np.log(0.05), np.log(50), 801))
    grid_nll = np.array([mean_nll(scores, t) for t in grid])
    best = grid[np.argmin(grid_nll)]
    spacing = grid[1] / grid[0]
    assert best / spacing <= fitted.temperature_ <= best * spacing
    assert mean_nll(scores, fitted.temperature_) <= grid_nll.min() + 1e-12
    assert fitted.nll_ == pytest.approx(mean_nll(scores, fitted.temperature_), rel=1e-12)


def test_temperature_one_transform_is_the_plain_softmax():
    scores = planted_scores(50, 1.0, seed=5)
    calibrator = TemperatureScaling.from_dict({"kind": "temperature", "temperature": 1.0})
    probs = calibrator.transform(scores)
    for i in range(scores.n_questions):
        segment = slice(scores.offsets[i], scores.offsets[i + 1])
        np.testing.assert_allclose(probs.choice_probs[segment], softmax(scores.choice_scores[segment]), rtol=1e-12)
    np.testing.assert_array_equal(probs.predictions, ragged_argmax(scores.choice_scores, scores.offsets))


@given(
    st.lists(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=5), min_size=1, max_size=25),
    st.integers(0, 2**32 - 1),
)
@settings(max_examples=60, deadline=None)
def test_temperature_is_positive_and_inside_the_bounds(score_lists, seed):
    rng = np.random.default_rng(seed)
    gold = [int(rng.integers(len(s))) for s in score_lists]
    scores = ChoiceScores.from_lists(score_lists, gold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TemperatureAtBoundWarning)
        fitted = TemperatureScaling().fit(scores)
    assert 1e-3 <= fitted.temperature_ <= 1e5
    assert np.isfinite(fitted.nll_)
    assert (fitted.at_bound_ is None) or fitted.temperature_ in (1e-3, 1e5)


def test_json_round_trip_gives_identical_probabilities():
    scores = planted_scores(300, 1.7, seed=6)
    fitted = TemperatureScaling().fit(scores)
    document = json.loads(json.dumps(fitted.to_dict()))
    assert document["kind"] == "temperature" and document["n_fit"] == 300
    assert document["temperature"] == fitted.temperature_
    # independent: scipy's softmax of the scores divided by the fitted T, question by question
    expected = softmax(padded(scores) / fitted.temperature_, axis=1)
    for rebuilt in (fitted, TemperatureScaling.from_dict(document), calibrator_from_dict(document)):
        assert isinstance(rebuilt, TemperatureScaling)
        probs = rebuilt.transform(scores)
        np.testing.assert_allclose(padded_probs(probs), expected, rtol=1e-12, atol=1e-300)
        np.testing.assert_array_equal(probs.predictions, ragged_argmax(scores.choice_scores, scores.offsets))


@pytest.mark.parametrize("temperature", [0.3, 4.0])
def test_transform_divides_the_scores_by_t(temperature):
    """softmax(s / T): T > 1 softens every question, T < 1 sharpens it (scipy's softmax as the oracle)."""
    scores = planted_scores(200, 1.0, seed=8)
    probs = TemperatureScaling.from_dict({"kind": "temperature", "temperature": temperature}).transform(scores)
    np.testing.assert_allclose(padded_probs(probs), softmax(padded(scores) / temperature, axis=1), rtol=1e-12, atol=1e-300)
    plain = scores.probabilities()
    if temperature > 1:
        assert (probs.confidences < plain.confidences).all()
    else:
        assert (probs.confidences > plain.confidences).all()


def test_every_answer_right_stops_at_the_smallest_temperature_with_a_warning():
    scores = ChoiceScores.from_lists([[0.0, -1.0, -2.0]] * 30 + [[-3.0, 1.0]] * 7, [0] * 30 + [1] * 7)
    with pytest.warns(TemperatureAtBoundWarning, match=r"minimum temperature T=0.001.*100.0% on 37 questions"):
        fitted = TemperatureScaling().fit(scores)
    assert fitted.temperature_ == 1e-3 and fitted.at_bound_ == "min"
    assert fitted.to_dict()["at_bound"] == "min"
    assert np.isfinite(fitted.transform(scores).choice_probs).all()


def test_every_answer_wrong_stops_at_the_largest_temperature_with_a_warning():
    scores = ChoiceScores.from_lists([[0.0, -1.0]] * 20 + [[-2.0, 0.5]] * 5, [1] * 20 + [0] * 5)
    with pytest.warns(TemperatureAtBoundWarning, match="maximum temperature"):
        fitted = TemperatureScaling().fit(scores)
    assert fitted.temperature_ == 1e5 and fitted.at_bound_ == "max"


def test_interior_optimum_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", TemperatureAtBoundWarning)
        TemperatureScaling().fit(planted_scores(500, 2.0, seed=7))


def test_all_tied_choices_give_temperature_one():
    scores = ChoiceScores.from_lists([[1.0, 1.0], [-2.0, -2.0, -2.0]], [0, 2])
    fitted = TemperatureScaling().fit(scores)
    assert fitted.temperature_ == 1.0 and fitted.at_bound_ is None


def test_bad_input_errors_quote_the_value():
    with pytest.raises(ValueError, match=r"min=5.0, max=1.0"):
        TemperatureScaling(min_temperature=5.0, max_temperature=1.0)
    with pytest.raises(ValueError, match=r"-2.0"):
        TemperatureScaling.from_dict({"kind": "temperature", "temperature": -2.0})
    with pytest.raises(ValueError, match=r"kind 'temperature'; got kind 'platt'"):
        TemperatureScaling.from_dict({"kind": "platt", "slope": 1.0, "intercept": 0.0})
    with pytest.raises(ValueError, match="not fitted"):
        TemperatureScaling().transform(planted_scores(5, 1.0))
    empty = ChoiceScores(np.zeros(0), np.array([0]), np.zeros(0, dtype=np.int64))
    with pytest.raises(CalibratorCannotFit, match="at least one question"):
        TemperatureScaling().fit(empty)
