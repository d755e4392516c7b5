"""Each model's difference to a baseline on one task, with a paired interval wherever the questions can be paired.

The layer between the comparison documents (``compare.py``, the distill report) and the statistics
(``first_eval.metrics.paired``). For a model and the baseline on a task:

1. both audits kept their questions (``questions.jsonl.gz``) and share doc_ids: a **paired** bootstrap over the
   shared questions (all of them, or the common ones, said in the note);
2. both kept their questions but share none: an **unpaired** bootstrap, each model resampled on its own;
3. an audit without per-question data (written by an older ``first``): the point difference of the two
   ``metrics.json`` values with an unpaired interval combined from the two models' own intervals.

Entries are ``{"delta", "ci": [low, high], "paired", "n", "excludes_zero"}`` (``delta_plugin`` too for the ECE
metrics; see ``paired.py`` for the noise-corrected ECE difference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from first_eval.metrics.paired import NUMERICAL_ZERO, Delta, paired_deltas, unpaired_deltas, unpaired_from_intervals
from first_eval.questions import QuestionTable, common_questions

# Differenced against the baseline, in the order tables show them; lower is better except accuracy.
DELTA_METRICS = ("accuracy", "ece", "ece_calibrated", "brier", "nll", "mean_confidence")
HIGHER_IS_BETTER = frozenset({"accuracy"})
DELTA_LABELS = {"accuracy": "accuracy", "ece": "ECE", "ece_calibrated": "ECE after T", "brier": "Brier",
                "nll": "NLL", "mean_confidence": "mean confidence"}


@dataclass(frozen=True)
class DeltaSettings:
    """How the intervals of the differences are drawn (``first compare --bootstrap/--seed``)."""

    n_bootstrap: int = 1000
    seed: int = 0
    confidence_level: float = 0.95

    def __post_init__(self) -> None:
        from first_eval.audit import MAX_BOOTSTRAP, MAX_SEED

        if isinstance(self.n_bootstrap, bool) or not isinstance(self.n_bootstrap, int) or not 0 <= self.n_bootstrap <= MAX_BOOTSTRAP:
            raise ValueError(f"--bootstrap must be an integer between 0 and {MAX_BOOTSTRAP}; got {self.n_bootstrap!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"--seed must be an integer between 0 and {MAX_SEED} (numpy's seed range); got {self.seed!r}")
        if not 0 < self.confidence_level < 1:
            raise ValueError(f"confidence level must be in (0, 1); got {self.confidence_level!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"resamples": self.n_bootstrap, "seed": self.seed, "confidence_level": self.confidence_level}


@dataclass(frozen=True)
class TaskDeltas:
    """The differences of one model to the baseline on one task, and how its questions were paired."""

    deltas: dict[str, Delta]
    paired: bool
    n: int  # questions paired (paired) or the model's own (unpaired)
    note: str  # empty when every question of both was paired

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {metric: self.deltas[metric].to_dict() for metric in DELTA_METRICS if metric in self.deltas}


def metric_value(metrics: Mapping[str, Any], metric: str) -> tuple[float | None, Any]:
    """``(value, [low, high])`` of a metric in a ``first.report/1`` task block; ``ece_calibrated`` is the
    cross-fitted temperature-scaled ECE under ``calibrated.temperature``."""
    if metric == "ece_calibrated":
        block = (metrics.get("calibrated") or {}).get("temperature") or {}
        return block.get("ece"), block.get("ece_ci")
    return metrics.get(metric), metrics.get(f"{metric}_ci")


def task_deltas(model_metrics: Mapping[str, Any], base_metrics: Mapping[str, Any],
                model_questions: QuestionTable | None, base_questions: QuestionTable | None,
                settings: DeltaSettings, missing: str = "") -> TaskDeltas:
    """``model - baseline`` of ``DELTA_METRICS`` on one task (module docstring for the three cases).

    ``missing``: which model lacks per-question data (named in the note when one does).
    """
    bins_model, bins_base = int(model_metrics.get("n_bins") or 15), int(base_metrics.get("n_bins") or 15)
    draw = dict(n_resamples=settings.n_bootstrap, seed=settings.seed, confidence_level=settings.confidence_level)
    if model_questions is not None and base_questions is not None:
        pairing = common_questions(model_questions, base_questions)
        left_out = (f"; {pairing.n_disagreeing} doc_id(s) in both with a different gold answer or number of choices "
                    "left out" if pairing.n_disagreeing else "")
        if pairing.n:
            deltas = paired_deltas(model_questions.outcomes(pairing.model_index, bins_model),
                                   base_questions.outcomes(pairing.base_index, bins_base), **draw)
            note = "" if pairing.complete else (
                f"paired on the {pairing.n} questions both answered (of {pairing.n_model} and {pairing.n_base})"
                f"{left_out}; the differences are over those questions only")
            return TaskDeltas(deltas, True, pairing.n, note)
        deltas = unpaired_deltas(model_questions.outcomes(None, bins_model),
                                 base_questions.outcomes(None, bins_base), **draw)
        return TaskDeltas(deltas, False, model_questions.n,
                          f"no question in common (no shared doc_id{left_out}): unpaired intervals")
    n = int(model_metrics.get("n") or 0)
    deltas = {}
    for metric in DELTA_METRICS:
        value, interval = metric_value(model_metrics, metric)
        reference, reference_interval = metric_value(base_metrics, metric)
        if value is not None and reference is not None:
            deltas[metric] = unpaired_from_intervals(value, reference, interval, reference_interval, n)
    return TaskDeltas(deltas, False, n, f"no per-question data{' for ' + missing if missing else ''} (an audit by an "
                      "older first): each model's own interval, combined")


def verdict(entry: Mapping[str, Any] | None, metric: str) -> str | None:
    """``"better"`` / ``"worse"`` when the interval of ``model - baseline`` excludes 0, else None."""
    if not entry:
        return None
    low, high = (entry.get("ci") or [None, None])
    if low is None or high is None or low <= NUMERICAL_ZERO and high >= -NUMERICAL_ZERO:
        return None
    improved = low > 0 if metric in HIGHER_IS_BETTER else high < 0
    return "better" if improved else "worse"
