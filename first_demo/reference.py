"""The demo's multi-seed reference figures, printed beside a single run's own numbers.

One seed's table does not reproduce digit for digit on another CPU (floating-point order differs), so ``first demo``
ends with its seed's accuracy / ECE next to the mean ± sd over seeds 0, 1, 2 that ``benchmarks/bench_fidelity.py``
measured for the committed world recipe (``reference_seeds.json``; the README's table). A run of another recipe
gets no reference rather than a misleading one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REFERENCE_FILE = Path(__file__).with_name("reference_seeds.json")
SHOWN_MODELS = ("teacher", "teacher+ts", "student-base", "ce", "topk-notemp", "first")


def load_reference(recipe: str) -> dict[str, Any] | None:
    """The reference figures measured for world recipe ``recipe`` (its config hash prefix), or None."""
    try:
        reference = json.loads(REFERENCE_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return reference if reference.get("recipe") == recipe[: len(reference.get("recipe", ""))] else None


def reference_lines(metrics: dict[str, Any], reference: dict[str, Any] | None, seed: int) -> list[str]:
    """Lines ``model  task  this seed acc/ECE | seeds mean±sd acc/ECE`` for the models worth comparing."""
    if reference is None:
        return ["no multi-seed reference for this world recipe (benchmarks/bench_fidelity.py measures one)"]
    seeds = ", ".join(str(s) for s in reference["seeds"])
    lines = [f"seed {seed} against the mean ± sd over seeds {seeds} ({reference['measured_by']}); single runs differ "
             "between CPUs, the means are what to compare"]
    for model in SHOWN_MODELS:
        ours, theirs = metrics.get("models", {}).get(model, {}).get("tasks", {}), reference["models"].get(model, {})
        for task, figures in theirs.items():
            if task not in ours:
                continue
            (acc_mean, acc_sd), (ece_mean, ece_sd) = figures["accuracy"], figures["ece"]
            lines.append(f"{model:<13} {task:<22} {ours[task]['accuracy']:.3f} / {ours[task]['ece']:.3f}   |   "
                         f"{acc_mean:.3f}±{acc_sd:.3f} / {ece_mean:.3f}±{ece_sd:.3f}")
    return lines
