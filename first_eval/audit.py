"""Audit one task: choice scores -> metrics, cross-fitted calibrators, score-mode comparison.

Pure computation (no files, no printing): ``audit_task(samples, config) -> TaskAudit``. The report
layer renders ``TaskAudit`` values; ``metrics.json`` is ``TaskAudit.to_dict()``.

Why cross-fitting: a calibrator scored on the data it was fit on looks better than it is (isotonic
regression can reach ECE 0 on its own training data). Every post-calibration number here comes from
k-fold out-of-fold predictions; the calibrators saved for reuse are fit once more on all the data.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from first_eval.calibrators import CALIBRATORS, CalibratorCannotFit, cross_fit
from first_eval.errors import InputError
from first_eval.letter_mass import LetterSummary, letter_summary
from first_eval.lm_eval_bridge.samples import TaskSamples
from first_eval.metrics import MetricSet, compute_metrics
from first_eval.questions import QuestionTable
from first_eval.scores import SCORE_MODES, ChoiceScores

# Above this NLL-optimal temperature the scores carry little usable confidence at T=1 (e.g. summed
# log-likelihoods that mostly measure answer length); the report says so next to the numbers.
LARGE_TEMPERATURE = 10.0
# Seeds go to numpy's default_rng and scikit-learn's KFold (a legacy RandomState: 0 <= seed < 2**32).
MAX_SEED = 2**32 - 1
# Beyond these the flags only cost memory or time: no diagram has a million bins.
MAX_BINS = 10_000
MAX_BOOTSTRAP = 1_000_000


@dataclass(frozen=True)
class AuditConfig:
    """How a task is audited (the ``first report`` flags)."""

    n_bins: int = 15
    score_mode: str = "sum"
    calibrators: tuple[str, ...] = ("temperature", "platt", "isotonic")
    n_folds: int = 5
    n_bootstrap: int = 1000
    seed: int = 0
    confidence_level: float = 0.95

    def __post_init__(self) -> None:
        if self.n_bins < 1:
            raise ValueError(f"--bins must be >= 1; got {self.n_bins}")
        if self.n_bins > MAX_BINS:
            raise ValueError(f"--bins must be <= {MAX_BINS}; got {self.n_bins}")
        if self.score_mode not in SCORE_MODES:
            raise ValueError(f"--score must be one of {', '.join(SCORE_MODES)}; got {self.score_mode!r}")
        unknown = [c for c in self.calibrators if c not in CALIBRATORS]
        if unknown:
            raise ValueError(f"--calibrators: unknown calibrator {unknown[0]!r}; choose from {', '.join(CALIBRATORS)}")
        if self.n_folds < 2:
            raise ValueError(f"--folds must be >= 2 (cross-fitting needs held-out data); got {self.n_folds}")
        if self.n_bootstrap < 0:
            raise ValueError(f"--bootstrap must be >= 0; got {self.n_bootstrap}")
        if self.n_bootstrap > MAX_BOOTSTRAP:
            raise ValueError(f"--bootstrap must be <= {MAX_BOOTSTRAP}; got {self.n_bootstrap}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"--seed must be an integer between 0 and {MAX_SEED} (numpy's seed range); got {self.seed!r}")
        if not 0 < self.confidence_level < 1:
            raise ValueError(f"confidence level must be in (0, 1); got {self.confidence_level}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "bins": self.n_bins, "score_mode": self.score_mode, "calibrators": list(self.calibrators),
            "folds": self.n_folds, "bootstrap": self.n_bootstrap, "seed": self.seed,
            "confidence_level": self.confidence_level,
        }


@dataclass(frozen=True)
class CalibratedResult:
    """A calibrator's cross-fitted evaluation, or why it could not be fit."""

    name: str
    metrics: MetricSet | None
    fitted: dict[str, Any] | None  # to_dict() of the calibrator fit on all data (saved for reuse)
    fold_params: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    confidences: np.ndarray | None = None  # (n,) each question's out-of-fold calibrated confidence (not in JSON)

    def to_dict(self) -> dict[str, Any]:
        if self.metrics is None:
            return {"error": self.error}
        out = self.metrics.to_dict()
        out.pop("reliability", None)
        if self.name == "temperature" and self.fitted is not None:
            # at_bound: None, or "min"/"max" when the fit stopped at that end of its search range (not an optimum)
            out = {"temperature": self.fitted["temperature"], "at_bound": self.fitted.get("at_bound"), **out}
            out["fold_temperatures"] = [p.get("temperature") for p in self.fold_params]
        return out


@dataclass(frozen=True)
class ScoreModeSummary:
    """The same questions under another score mode, so length effects are visible."""

    score_mode: str
    accuracy: float
    mean_confidence: float
    ece: float
    temperature: float  # NLL-optimal temperature fitted on all questions
    temperature_at_bound: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy, "mean_confidence": self.mean_confidence, "ece": self.ece,
            "temperature": self.temperature, "temperature_at_bound": self.temperature_at_bound,
        }


@dataclass(frozen=True)
class TaskAudit:
    task: str
    source: str
    config: AuditConfig
    metrics: MetricSet
    calibrated: dict[str, CalibratedResult]
    score_modes: dict[str, ScoreModeSummary]
    n_choices: dict[int, int]  # number of choices -> number of questions
    lm_eval_accuracy: dict[str, float]  # lm-eval's own recorded acc / acc_norm, when the records had them
    notes: tuple[str, ...] = ()
    letters: LetterSummary | None = None  # lettered tasks: letter mass and the unrenormalised metrics
    questions: QuestionTable | None = None  # per-question answers (questions.jsonl.gz), for paired comparisons

    @property
    def temperature(self) -> float | None:
        result = self.calibrated.get("temperature")
        return None if result is None or result.fitted is None else float(result.fitted["temperature"])

    def to_dict(self) -> dict[str, Any]:
        out = self.metrics.to_dict()
        out["source"] = self.source
        out["score_mode"] = self.config.score_mode
        out["n_choices"] = {str(k): v for k, v in sorted(self.n_choices.items())}
        out["lm_eval"] = dict(self.lm_eval_accuracy)
        out["calibrated"] = {name: result.to_dict() for name, result in self.calibrated.items()}
        out["score_modes"] = {mode: summary.to_dict() for mode, summary in self.score_modes.items()}
        out["notes"] = list(self.notes)
        if self.letters is not None:
            out["letters"] = self.letters.to_dict()
        return out


def audit_task(samples: TaskSamples, config: AuditConfig) -> TaskAudit:
    """Metrics with bootstrap CIs, cross-fitted calibrators, and the other score mode, for one task."""
    # Finite scores whose spread overflows float64 (e.g. -1e308 next to 1e308) give a probability of 0 (a -inf
    # log-probability) in the softmax; that is the right limit, so numpy's overflow warning is only noise here.
    with np.errstate(over="ignore"):
        return _audit_task(samples, config)


def _audit_task(samples: TaskSamples, config: AuditConfig) -> TaskAudit:
    scores = samples.choice_scores(config.score_mode)
    if scores.n_questions < config.n_folds:
        raise InputError(
            f"task {samples.task!r} has {scores.n_questions} question(s) but --folds is {config.n_folds}; "
            "lower --folds or give more questions"
        )
    probs = scores.probabilities()
    metrics = compute_metrics(
        probs, n_bins=config.n_bins, n_bootstrap=config.n_bootstrap,
        seed=config.seed, confidence_level=config.confidence_level,
    )
    calibrated = {name: _evaluate_calibrator(name, scores, config) for name in config.calibrators}
    scaled = calibrated.get("temperature")
    questions = QuestionTable.from_probs(samples.doc_ids, probs, None if scaled is None else scaled.confidences)
    notes = list(samples.notes)
    letters = None
    if samples.lettered:
        letters = letter_summary(samples.loglik_sums, samples.offsets, samples.gold, samples.is_greedy, config.n_bins)
        if letters.mostly_not_letters:
            notes.append(
                f"The model mostly does not answer with a letter: on average {letters.mean_mass:.1%} of its next-token "
                f"probability falls on the valid letters (one question in ten below {letters.lowest_decile_mass:.1%}). "
                "The confidences here are renormalised over the letters; see the unrenormalised row."
            )
    modes = _score_mode_summaries(samples, config)
    current = modes.get(config.score_mode)
    fitted_temperature = calibrated["temperature"].fitted if "temperature" in calibrated else None
    if fitted_temperature is not None and fitted_temperature.get("at_bound"):
        notes.append(_at_bound_note(fitted_temperature, scores, samples.doc_ids))
    elif current is not None and current.temperature_at_bound:
        side = "min" if current.temperature < 1.0 else "max"
        notes.append(_at_bound_note({"temperature": current.temperature, "at_bound": side}, scores, samples.doc_ids))
    elif current is not None and current.temperature > LARGE_TEMPERATURE:
        notes.append(
            f"The NLL-optimal temperature is {current.temperature:.3g}: at T=1 these {config.score_mode} scores are "
            "far more peaked than the model's real accuracy supports."
            + (" Summed log-likelihoods grow with answer length, so they often measure length more than belief;"
               " compare the char-norm row." if config.score_mode == "sum" else "")
        )
    recorded_key = "acc" if config.score_mode == "sum" else "acc_norm"
    lm_eval_accuracy = {key: float(values.mean()) for key, values in samples.recorded.items()}
    if recorded_key in samples.recorded:
        ours = probs.correct.astype(float)
        mismatched = int((ours != samples.recorded[recorded_key]).sum())
        if mismatched:
            notes.append(
                f"{mismatched} question(s) disagree with lm-eval's recorded {recorded_key} (ties or a custom "
                "process_results); accuracy here is recomputed from the log-likelihoods."
            )
    counts = np.bincount(scores.n_choices)
    return TaskAudit(
        task=samples.task, source=samples.source, config=config, metrics=metrics, calibrated=calibrated,
        score_modes=modes, n_choices={int(k): int(v) for k, v in enumerate(counts) if v},
        lm_eval_accuracy=lm_eval_accuracy, notes=tuple(notes), letters=letters, questions=questions,
    )


def _at_bound_note(fitted: dict[str, Any], scores: ChoiceScores, doc_ids: np.ndarray) -> str:
    """Say that the fitted temperature is the end of its search range, not an optimum, and what drove it there."""
    temperature = float(fitted["temperature"])
    if fitted["at_bound"] == "min":
        accuracy = float(scores.probabilities().correct.mean())
        return (f"The fitted temperature T = {temperature:.3g} is at its search bound (the smallest T tried): the NLL "
                f"keeps falling as T shrinks, as it does when (nearly) every top-scored answer is right (accuracy "
                f"{accuracy:.1%}). The calibrated numbers use that bound, not an optimum.")
    # How far below its question's best choice each gold answer is scored; one huge gap alone can push T up.
    best = np.maximum.reduceat(scores.choice_scores, scores.offsets[:-1])
    gaps = best - scores.choice_scores[scores.offsets[:-1] + scores.gold]  # (n,) >= 0, may be inf
    worst = int(np.argmax(gaps))
    return (f"The fitted temperature T = {temperature:.3g} is at its search bound (the largest T tried): the NLL keeps "
            "falling as T grows, so the calibrated numbers use that bound, not an optimum. This happens when the scores "
            "rank the gold answer no better than chance, or when a few gold answers are scored absurdly low: the largest "
            f"gap here is {float(gaps[worst]):.3g} below the question's best choice (doc_id {int(doc_ids[worst])}).")


def _evaluate_calibrator(name: str, scores: ChoiceScores, config: AuditConfig) -> CalibratedResult:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # at-bound temperatures are reported, not warned per fold
            crossed = cross_fit(name, scores, n_folds=config.n_folds, seed=config.seed)
            fitted = CALIBRATORS[name]().fit(scores).to_dict()
    except CalibratorCannotFit as error:
        return CalibratedResult(name=name, metrics=None, fitted=None, error=str(error))
    metrics = compute_metrics(
        crossed.probs, n_bins=config.n_bins, n_bootstrap=config.n_bootstrap,
        seed=config.seed, confidence_level=config.confidence_level,
    )
    return CalibratedResult(name=name, metrics=metrics, fitted=fitted, fold_params=list(crossed.fold_calibrators),
                            confidences=crossed.probs.confidences)


def _score_mode_summaries(samples: TaskSamples, config: AuditConfig) -> dict[str, ScoreModeSummary]:
    from first_eval.calibrators import TemperatureScaling
    from first_eval.metrics import ece

    summaries = {}
    for mode in SCORE_MODES:
        if mode == "char-norm" and samples.char_lengths is None:
            continue
        scores = samples.choice_scores(mode)
        probs = scores.probabilities()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scaler = TemperatureScaling().fit(scores)
        summaries[mode] = ScoreModeSummary(
            score_mode=mode,
            accuracy=float(probs.correct.mean()),
            mean_confidence=float(probs.confidences.mean()),
            ece=float(ece(probs.confidences, probs.correct, n_bins=config.n_bins)),
            temperature=float(scaler.temperature_),
            temperature_at_bound=scaler.at_bound_ is not None,
        )
    return summaries
