"""Release gates: the thresholds ``first report`` and ``first compare`` check after writing their report.

``first report --max-ece X --min-accuracy Y [--gate-on point|upper]``: a task fails when its ECE is above X or
its accuracy below Y. ``point`` checks the point estimates; ``upper`` the pessimistic end of each bootstrap
interval (the ECE's upper bound, the accuracy's lower bound), so a task passes only when the data show it.

``first compare --fail-if-worse ece,brier``: a model fails when its paired interval of the difference to the
baseline excludes 0 on the bad side (higher ECE/Brier/NLL, lower accuracy) for a named metric.

Both are pure: they read the documents the reports write and return what failed; the CLI prints one line per
failure and exits 1 (exit code 2 stays for bad input). The result goes into ``metrics.json`` under ``gate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from first_eval.deltas import verdict

GATE_MODES = ("point", "upper")
# Metrics --fail-if-worse may name: the deltas first compare takes that have a better direction.
WORSE_METRICS = ("accuracy", "ece", "ece_calibrated", "brier", "nll")


@dataclass(frozen=True)
class ReportGate:
    """Thresholds of ``first report``; None leaves a threshold unchecked."""

    max_ece: float | None = None
    min_accuracy: float | None = None
    on: str = "point"

    def __post_init__(self) -> None:
        for flag, value in (("--max-ece", self.max_ece), ("--min-accuracy", self.min_accuracy)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{flag} must be between 0 and 1; got {value!r}")
        if self.on not in GATE_MODES:
            raise ValueError(f"--gate-on must be one of {', '.join(GATE_MODES)}; got {self.on!r}")

    @property
    def active(self) -> bool:
        return self.max_ece is not None or self.min_accuracy is not None

    def check(self, tasks: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """``{"max_ece", "min_accuracy", "on", "passed", "failures": [{"task", "metric", "value", "threshold"}]}``.

        ``tasks``: ``metrics.json``'s ``tasks``. With ``on="upper"`` a task without an interval fails (its value
        is None): the gate cannot show it passes.
        """
        failures = []
        for task, metrics in tasks.items():
            for metric, threshold, bound, too_far in (
                    ("ece", self.max_ece, 1, lambda v, t: v > t), ("accuracy", self.min_accuracy, 0, lambda v, t: v < t)):
                if threshold is None:
                    continue
                value = metrics.get(metric) if self.on == "point" else (metrics.get(f"{metric}_ci") or [None, None])[bound]
                if value is None or too_far(value, threshold):
                    failures.append({"task": task, "metric": metric, "value": value, "threshold": threshold})
        return {"max_ece": self.max_ece, "min_accuracy": self.min_accuracy, "on": self.on,
                "passed": not failures, "failures": failures}


def report_gate_lines(gate: Mapping[str, Any]) -> list[str]:
    """One line per failing task, e.g. ``gate failed: arc_easy: ECE 0.1234 > 0.1 (--max-ece)``."""
    by_task: dict[str, list[str]] = {}
    for failure in gate["failures"]:
        metric, value, threshold = failure["metric"], failure["value"], failure["threshold"]
        flag, relation = ("--max-ece", ">") if metric == "ece" else ("--min-accuracy", "<")
        label = ("ECE" if metric == "ece" else "accuracy") + (
            "" if gate["on"] == "point" else " upper CI bound" if metric == "ece" else " lower CI bound")
        by_task.setdefault(failure["task"], []).append(
            f"{label} {value:.4f} {relation} {threshold:g} ({flag})" if value is not None
            else f"{label} unknown: no bootstrap interval ({flag} with --gate-on upper needs --bootstrap > 0)")
    return [f"gate failed: {task}: " + "; ".join(texts) for task, texts in by_task.items()]


def parse_worse_metrics(value: str) -> tuple[str, ...]:
    """``"ece,brier"`` -> ("ece", "brier"); ``ValueError`` naming the flag for an unknown metric."""
    from first_eval.errors import did_you_mean

    names = tuple(part.strip() for part in value.split(",") if part.strip())
    if not names:
        raise ValueError("--fail-if-worse is empty; give metrics, e.g. --fail-if-worse ece,brier")
    for name in names:
        if name not in WORSE_METRICS:
            raise ValueError("--fail-if-worse: " + did_you_mean(name, list(WORSE_METRICS), "metric"))
    return names


def check_worse(deltas: Mapping[str, Mapping[str, Mapping[str, Any]]], metrics: Sequence[str]) -> dict[str, Any]:
    """``{"fail_if_worse", "passed", "failures": [{"model", "task", "metric", "delta", "ci", "paired"}]}``."""
    failures = []
    for model, per_task in deltas.items():
        for task, entries in per_task.items():
            for metric in metrics:
                entry = entries.get(metric)
                if verdict(entry, metric) == "worse":
                    failures.append({"model": model, "task": task, "metric": metric, "delta": entry["delta"],
                                     "ci": list(entry["ci"]), "paired": entry["paired"]})
    return {"fail_if_worse": list(metrics), "passed": not failures, "failures": failures}


def worse_lines(gate: Mapping[str, Any], baseline: str) -> list[str]:
    """One line per model and task that is significantly worse, naming the metrics."""
    by_pair: dict[tuple[str, str], list[str]] = {}
    for failure in gate["failures"]:
        low, high = failure["ci"]
        by_pair.setdefault((failure["model"], failure["task"]), []).append(
            f"{failure['metric']} {failure['delta']:+.4f} [{low:+.4f}, {high:+.4f}]"
            + ("" if failure["paired"] else " (unpaired)"))
    return [f"worse than {baseline}: {model} on {task}: " + "; ".join(texts) + " (--fail-if-worse)"
            for (model, task), texts in by_pair.items()]
