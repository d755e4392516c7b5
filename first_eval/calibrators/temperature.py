"""Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017).

One parameter ``T > 0`` divides every choice score before the per-question softmax:

    p_ij(T) = exp(s_ij / T) / sum_k exp(s_ik / T)
    NLL(T)  = -(1/n) sum_i log p_{i, gold_i}(T)

``T`` is the minimiser of the mean NLL of the gold choice. Predictions (the argmax) never change.

How it is fit. With ``beta = 1 / T`` the NLL is ``mean_i(logsumexp_j(beta s_ij) - beta s_{i,gold})``,
a convex function of ``beta`` (log-sum-exp of linear functions). Its derivative

    g(beta) = mean_i( E_{p_i(beta)}[s_i] - s_{i,gold} ),     g'(beta) = mean_i Var_{p_i(beta)}[s_i] >= 0

is increasing, so the optimum is the single root of ``g`` — found by Brent's method (``brentq``) on
``log beta`` between the bounds, to ~1e-12 relative precision in a dozen passes over the data. If
``g`` has one sign over the whole range ``[1/max_temperature, 1/min_temperature]`` the optimum lies
outside it: ``T`` is set to that bound, ``at_bound_`` says which, and a
``TemperatureAtBoundWarning`` is issued. That happens when every answer is right (NLL keeps falling
as ``T -> 0``) or when the scores rank the gold answer no better than chance (``T -> infinity``).
The default range ``[1e-3, 1e5]`` covers real LLM scores: for summed log-likelihoods of long answers
the NLL-optimal T can be in the thousands.

Any finite scores work, even ``±1e308`` whose differences overflow float64: the fit runs on the
scores times ``2**-k`` (so every |score| <= 1 and a question's spread is <= 2; T scales with them,
exactly), and where ``beta`` itself would overflow it forms ``beta * centred`` as
``-exp(log beta + log(-centred))``; no step can make a NaN. One such extreme score typically drives
T to a bound, which ``at_bound_`` then says (and the audit's notes and report with it).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import numpy as np

from first_eval.calibrators.base import check_fit_input, check_fitted, check_kind
from first_eval.scores import ChoiceProbs, ChoiceScores, ragged_argmax, ragged_max, ragged_sum

DEFAULT_MIN_TEMPERATURE = 1e-3
DEFAULT_MAX_TEMPERATURE = 1e5


class TemperatureAtBoundWarning(UserWarning):
    """The NLL-optimal temperature lies outside the allowed range; the fit stopped at a bound."""


class TemperatureScaling:
    """Single-temperature calibrator ``softmax(scores / T)``, T fit by minimum NLL of the gold choice.

    Args:
        min_temperature, max_temperature: the search range for ``T`` (``0 < min < max``).

    Fitted attributes:
        temperature_: float, the NLL-optimal T within the range.
        at_bound_: ``None`` for an interior optimum, else ``"min"`` or ``"max"`` (the bound it stopped at).
        nll_: mean NLL of the gold choice at ``temperature_`` on the fitting data.
        n_fit_: number of questions it was fit on.
    """

    name = "temperature"

    def __init__(self, min_temperature: float = DEFAULT_MIN_TEMPERATURE, max_temperature: float = DEFAULT_MAX_TEMPERATURE):
        if not (0 < min_temperature < max_temperature < math.inf):
            raise ValueError(
                f"temperature range must satisfy 0 < min < max < inf; got min={min_temperature!r}, max={max_temperature!r}"
            )
        self.min_temperature = float(min_temperature)
        self.max_temperature = float(max_temperature)
        self.temperature_: float | None = None
        self.at_bound_: str | None = None
        self.nll_: float | None = None
        self.n_fit_: int | None = None

    def fit(self, scores: ChoiceScores) -> "TemperatureScaling":
        """Set ``temperature_`` to the minimiser of the mean gold NLL over ``[min_temperature, max_temperature]``."""
        check_fit_input(scores, "temperature scaling")
        temperature, at_bound = nll_optimal_temperature(scores, self.min_temperature, self.max_temperature)
        self.temperature_ = temperature
        self.at_bound_ = at_bound
        self.nll_ = float(-tempered_log_probs(scores, temperature)[scores.offsets[:-1] + scores.gold].mean())
        self.n_fit_ = scores.n_questions
        if at_bound is not None:
            accuracy = float(scores.probabilities().correct.mean())
            why = (
                "the NLL keeps falling as T -> 0, as it does when (nearly) every top-scored answer is right"
                if at_bound == "min"
                else "the NLL keeps falling as T grows, as it does when the scores rank the gold answer no better than chance"
            )
            warnings.warn(
                f"temperature scaling stopped at the {at_bound}imum temperature T={temperature:g}: {why} "
                f"(accuracy {accuracy:.1%} on {scores.n_questions} questions)",
                TemperatureAtBoundWarning,
                stacklevel=2,
            )
        return self

    def transform(self, scores: ChoiceScores) -> ChoiceProbs:
        """``softmax(scores / temperature_)`` within each question; predictions are the scores' argmax."""
        check_fitted(self, "temperature_")
        probs = np.exp(tempered_log_probs(scores, self.temperature_))
        return ChoiceProbs(probs, scores.offsets, scores.gold, ragged_argmax(scores.choice_scores, scores.offsets))

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "temperature_")
        return {
            "kind": self.name,
            "temperature": float(self.temperature_),
            "at_bound": self.at_bound_,
            "nll": float(self.nll_) if self.nll_ is not None else None,
            "n_fit": int(self.n_fit_) if self.n_fit_ is not None else None,
            "min_temperature": self.min_temperature,
            "max_temperature": self.max_temperature,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TemperatureScaling":
        """Rebuild from ``to_dict()``; only ``kind`` and ``temperature`` are required."""
        check_kind(d, cls.name, ("temperature",))
        temperature = d["temperature"]
        if not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
            raise ValueError(f"temperature must be a positive finite number; got {temperature!r}")
        calibrator = cls(
            min_temperature=d.get("min_temperature", min(DEFAULT_MIN_TEMPERATURE, temperature)),
            max_temperature=d.get("max_temperature", max(DEFAULT_MAX_TEMPERATURE, 2.0 * temperature)),
        )
        calibrator.temperature_ = float(temperature)
        calibrator.at_bound_ = d.get("at_bound")
        calibrator.nll_ = d.get("nll")
        calibrator.n_fit_ = d.get("n_fit")
        return calibrator

    def __repr__(self) -> str:
        fitted = f", temperature_={self.temperature_:.6g}" if self.temperature_ is not None else ""
        return f"TemperatureScaling(min_temperature={self.min_temperature:g}, max_temperature={self.max_temperature:g}{fitted})"


def nll_optimal_temperature(
    scores: ChoiceScores,
    min_temperature: float = DEFAULT_MIN_TEMPERATURE,
    max_temperature: float = DEFAULT_MAX_TEMPERATURE,
) -> tuple[float, str | None]:
    """The T in ``[min_temperature, max_temperature]`` minimising the mean gold NLL (module docstring).

    Returns:
        ``(temperature, at_bound)`` with ``at_bound`` ``None`` (interior optimum), ``"min"`` or ``"max"``.
        When every question's choices are tied the NLL does not depend on T; T = 1 is returned.
    """
    offsets = scores.offsets
    counts = scores.n_choices
    # Centre each question on its max after scaling by 2**-k (module docstring): centred in [-2, 0], finite.
    scale_exponent = _scale_exponent(scores.choice_scores)
    scaled = np.ldexp(scores.choice_scores, -scale_exponent)  # (total,) exact unless it underflows
    centred = scaled - np.repeat(ragged_max(scaled, offsets), counts)  # (total,) <= 0, max 0 per question
    if not centred.any():
        return 1.0, None
    gold_centred = centred[offsets[:-1] + scores.gold]  # (n,)
    n = len(gold_centred)
    log_neg_centred: list[np.ndarray] = []  # log(-centred), made only if beta leaves the float range

    def nll_slope(log_beta: float) -> float:
        """g(beta) = mean_i(E_p[s_i] - s_{i,gold}) for the scaled scores, beta = exp(log_beta) (may exceed float range)."""
        if log_beta < 700.0:  # beta < 1e304, so beta * centred >= -2e304: finite
            weights = np.exp(math.exp(log_beta) * centred)  # (total,) unnormalised p
        else:  # exp(beta * centred) as exp(-exp(log beta + log(-centred))): 0 where beta * centred < -1e308
            if not log_neg_centred:
                with np.errstate(divide="ignore"):
                    log_neg_centred.append(np.log(-centred))  # (total,), -inf at each question's max
            with np.errstate(over="ignore"):
                weights = np.exp(-np.exp(log_beta + log_neg_centred[0]))
        expected = ragged_sum(weights * centred, offsets) / ragged_sum(weights, offsets)  # (n,), sum of weights >= 1
        return float(np.sum((expected - gold_centred) / n))

    # T' = T * 2**-k for the scaled scores, so log beta' = log(2**k) - log T.
    return solve_nll_slope(nll_slope, min_temperature, max_temperature, scale_exponent * math.log(2.0))


def solve_nll_slope(nll_slope: Callable[[float], float], min_temperature: float, max_temperature: float,
                    shift: float = 0.0) -> tuple[float, str | None]:
    """The T in ``[min_temperature, max_temperature]`` where an increasing NLL derivative crosses 0 (module docstring).

    ``nll_slope(log_beta)``: g at ``beta = exp(shift) / T`` (``shift``: log of the factor the scores were scaled
    down by). Any convex NLL in beta fits, e.g. a token-level one over a whole vocabulary. Returns
    ``(temperature, at_bound)``, ``at_bound`` ``"min"``/``"max"`` when g has one sign over the whole range.
    """
    from scipy.optimize import brentq

    log_beta_low, log_beta_high = shift - math.log(max_temperature), shift - math.log(min_temperature)
    if nll_slope(log_beta_low) >= 0.0:  # NLL increasing in beta everywhere: optimum at the largest T
        return max_temperature, "max"
    if nll_slope(log_beta_high) <= 0.0:  # NLL decreasing in beta everywhere: optimum at the smallest T
        return min_temperature, "min"
    log_beta = brentq(nll_slope, log_beta_low, log_beta_high, xtol=1e-12, rtol=4 * np.finfo(float).eps, maxiter=200)
    temperature = math.exp(shift - log_beta)
    return float(min(max(temperature, min_temperature), max_temperature)), None


def tempered_log_probs(scores: ChoiceScores, temperature: float) -> np.ndarray:
    """(total,) ``log softmax(scores / T)`` per question, for any finite scores and T > 0 (never NaN).

    Each question is centred on its max *before* dividing by T (``s / T`` alone overflows for
    ``s = 1e308, T < 1``, and ``inf - inf`` is NaN), on scores scaled by ``2**-k`` so the centring
    itself cannot overflow; a choice infinitely far below its question's best gets ``-inf``.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature!r}")
    offsets = scores.offsets
    counts = scores.n_choices
    scale_exponent = _scale_exponent(scores.choice_scores)
    scaled = np.ldexp(scores.choice_scores, -scale_exponent)
    centred = scaled - np.repeat(ragged_max(scaled, offsets), counts)  # (total,) in [-2, 0]
    with np.errstate(over="ignore"):
        shifted = np.ldexp(centred / temperature, scale_exponent)  # (s - max s) / T; may be -inf, never NaN
    log_norm = np.log(ragged_sum(np.exp(shifted), offsets))  # (n,) >= 0: each question's max contributes exp(0)
    return shifted - np.repeat(log_norm, counts)


def _scale_exponent(values: np.ndarray) -> int:
    """k >= 0 with max|values| * 2**-k <= 1 (0 when the values are already within [-1, 1])."""
    largest = float(np.max(np.abs(values))) if len(values) else 0.0
    return max(int(np.frexp(largest)[1]), 0) if largest > 1.0 else 0
