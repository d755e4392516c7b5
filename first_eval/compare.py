"""Compare audits of several models: the decision screen, deltas to a baseline with paired intervals, diagrams.

Input is what ``first report`` wrote (``metrics.json`` of schema ``first.report/1`` and, from issue 12 on,
``questions.jsonl.gz``), so any two runs can be compared later without re-running a model. Audits without
the per-question file still compare, with unpaired intervals (``deltas.py``). ``build_comparison`` is pure;
``write_comparison`` renders and writes atomically.

``metrics.json`` (schema ``first.compare/2``; ``/1`` had bare floats as deltas)::

    {"schema": "first.compare/2", "baseline": NAME, "task_order": [...],
     "models": {NAME: {"source": DIR, "tasks": {TASK: {first.report/1 task block}}, "format", "questions": bool}},
     "deltas": {NAME: {TASK: {METRIC: {"delta", "ci": [low, high], "paired", "n", "excludes_zero"}}}},
     "pairing": {NAME: {TASK: {"paired", "n", "note"}}}, "bootstrap": {"resamples", "seed", "confidence_level"},
     "gate": {"fail_if_worse": [...], "passed", "failures": [...]}   (with --fail-if-worse), "meta": {...}}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from first_eval.deltas import DELTA_LABELS, HIGHER_IS_BETTER, DeltaSettings, task_deltas, verdict
from first_eval.errors import InputError
from first_eval.json_input import open_input, read_json_value
from first_eval.lm_eval_bridge.lettered import LETTERED_SUFFIX
from first_eval.questions import QUESTIONS_FILE, QuestionTable, read_questions

COMPARE_SCHEMA = "first.compare/2"
# Metrics shown in the change table, each with its interval; lower is better except accuracy.
TABLE_METRICS = ("accuracy", "ece", "ece_calibrated", "brier", "nll")


@dataclass(frozen=True)
class ModelAudit:
    """One model's ``first.report/1`` document under the name it is shown with, and its questions when kept
    (``{task: QuestionTable}``; None for an audit written before ``questions.jsonl.gz`` existed)."""

    name: str
    source: str
    tasks: dict[str, dict[str, Any]]
    questions: Mapping[str, QuestionTable] | None = None


def load_report_run(run_dir: Path) -> dict[str, Any]:
    """Read ``RUN_DIR/metrics.json`` written by ``first report``; every field ``first compare`` uses is checked."""
    path = run_dir / "metrics.json" if run_dir.is_dir() else run_dir
    if not path.exists():
        raise InputError(f"{run_dir}: no metrics.json here; run `first report ... --output {run_dir}` first")
    with open_input(path, hint="; give a folder written by `first report` (it holds metrics.json)") as stream:
        document = read_json_value(stream, path, limit=MAX_METRICS_BYTES)
    if not isinstance(document, dict) or document.get("schema") != "first.report/1":
        schema = document.get("schema") if isinstance(document, dict) else None
        distill = " (this is a `first distill` run's comparison: compare the `first report` folders under its audits/ instead)"
        compared = " (this is a comparison: compare the `first report` folders it was made from)"
        hint = {"first.distill/1": distill, "first.distill/2": distill, "first.compare/1": compared,
                COMPARE_SCHEMA: compared}
        raise InputError(f"{path}: schema is {_short(schema)}, expected 'first.report/1' (a metrics.json from "
                         f"`first report`){hint.get(schema, '') if isinstance(schema, str) else ''}")
    check_report_document(document, path)
    return document


# A metrics.json holds a few kB per task; anything near this is not one.
MAX_METRICS_BYTES = 256 * 2**20
# Fields every task of a first.report/1 document must hold as finite numbers (the table shows them) ...
REQUIRED_NUMBERS = ("accuracy", "ece", "brier")
# ... and fields that may be null (JSON has no inf/NaN: an infinite NLL, an AUROC with one class) or absent.
OPTIONAL_NUMBERS = ("nll", "mean_confidence", "ece_equal_mass", "mce", "auroc")


def check_report_document(document: Mapping[str, Any], path: Path) -> None:
    """Refuse a ``first.report/1`` document whose fields ``first compare`` reads have the wrong type.

    Raises ``InputError`` naming the file, the task and the field, quoting the value.
    """
    meta = document.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise InputError(f"{path}: field 'meta' is {_short(meta)}, not an object")
    tasks = document.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise InputError(f"{path}: field 'tasks' is {_short(tasks)}; expected an object of task name -> metrics")
    for task, metrics in tasks.items():
        def bad(field: str, value: Any, expected: str) -> InputError:
            return InputError(f"{path}: task {task!r}: field {field!r} is {_short(value)}, not {expected}")

        if not isinstance(metrics, dict):
            raise bad("tasks." + task, metrics, "an object of metrics")
        n = metrics.get("n")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise bad("n", n, "a question count")
        for field in REQUIRED_NUMBERS:
            if not _is_number(metrics.get(field)):
                raise bad(field, metrics.get(field), "a number")
        if "nll" not in metrics:
            raise bad("nll", None, "a number (the field is missing)")
        for field in OPTIONAL_NUMBERS:
            if metrics.get(field) is not None and not _is_number(metrics[field]):
                raise bad(field, metrics[field], "a number or null")
        interval = metrics.get("ece_ci")
        if interval is not None and not (isinstance(interval, list) and len(interval) == 2
                                         and all(v is None or _is_number(v) for v in interval)):
            raise bad("ece_ci", interval, "a [low, high] pair of numbers")
        calibrated = metrics.get("calibrated", {})
        if not isinstance(calibrated, dict):
            raise bad("calibrated", calibrated, "an object")
        temperature = calibrated.get("temperature", {})
        if not isinstance(temperature, dict):
            raise bad("calibrated.temperature", temperature, "an object")
        for field in ("temperature", "ece"):
            if temperature.get(field) is not None and not _is_number(temperature[field]):
                raise bad(f"calibrated.temperature.{field}", temperature[field], "a number or null")
        if "reliability" in metrics:
            _check_reliability(metrics["reliability"], bad)


def _check_reliability(bins: Any, bad) -> None:
    """``{"edges": (M+1,), "counts": (M,), "mean_confidence": (M,), "accuracy": (M,)}``, the last two may hold nulls."""
    if not isinstance(bins, dict):
        raise bad("reliability", bins, "an object of per-bin lists")
    edges, counts = bins.get("edges"), bins.get("counts")
    if not (isinstance(edges, list) and len(edges) >= 2 and all(_is_number(v) for v in edges)):
        raise bad("reliability.edges", edges, "a list of two or more numbers")
    size = len(edges) - 1
    if not (isinstance(counts, list) and len(counts) == size and all(_is_number(v) and v >= 0 for v in counts)):
        raise bad("reliability.counts", counts, f"a list of {size} counts (one per bin)")
    for field in ("mean_confidence", "accuracy"):
        values = bins.get(field)
        if not (isinstance(values, list) and len(values) == size and all(v is None or _is_number(v) for v in values)):
            raise bad(f"reliability.{field}", values, f"a list of {size} numbers or nulls (one per bin)")


def _displayable(name: str) -> str:
    """A name as text any renderer takes: an undecodable byte of a folder name or argv (a lone surrogate) as ``\\udcff``."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _is_number(value: Any) -> bool:
    """A finite JSON number (not a bool, not a numeric string)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond float range
        return False


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # nested too deeply, or an integer too long to print
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def model_name_for(document: Mapping[str, Any], run_dir: Path) -> str:
    model = (document.get("meta") or {}).get("model")
    return str(model) if model and isinstance(model, (str, int, float)) else run_dir.name


def unique_names(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def build_comparison(models: Sequence[ModelAudit], baseline: str | None = None,
                     settings: DeltaSettings = DeltaSettings()) -> dict[str, Any]:
    """The combined document: every model's tasks, plus each model's deltas against the baseline with intervals."""
    if not models:
        raise InputError("nothing to compare; give one or more run folders")
    names = [m.name for m in models]
    baseline = baseline or names[0]
    if baseline not in names:
        from first_eval.errors import did_you_mean

        raise InputError("--baseline: " + did_you_mean(baseline, names, "model"))
    base = next(m for m in models if m.name == baseline)
    # A lettered variant (``arc_easy_letters``) sits next to its cloze original: different questions to the
    # model, so no delta is taken between them, but a reader sees them side by side.
    def in_base(task: str) -> bool:
        cloze = task.removesuffix(LETTERED_SUFFIX)
        return cloze in base.tasks or cloze + LETTERED_SUFFIX in base.tasks

    tasks = sorted({task for m in models for task in m.tasks},
                   key=lambda t: (not in_base(t), t.removesuffix(LETTERED_SUFFIX), t))
    deltas: dict[str, dict[str, dict[str, Any]]] = {}
    pairing: dict[str, dict[str, dict[str, Any]]] = {}
    for model in models:
        if model.name == baseline:
            continue
        deltas[model.name], pairing[model.name] = {}, {}
        for task in tasks:
            if task in model.tasks and task in base.tasks:
                missing = " and ".join(m.name for m in (model, base) if m.questions is None)
                result = task_deltas(model.tasks[task], base.tasks[task], _questions(model, task),
                                     _questions(base, task), settings, missing=missing)
                deltas[model.name][task] = result.to_dict()
                pairing[model.name][task] = {"paired": result.paired, "n": result.n, "note": result.note}
    return {
        "schema": COMPARE_SCHEMA,
        "baseline": baseline,
        "task_order": tasks,
        "models": {m.name: {"source": m.source, "tasks": m.tasks, "format": model_format(m.tasks),
                            "questions": m.questions is not None} for m in models},
        "deltas": deltas,
        "pairing": pairing,
        "bootstrap": settings.to_dict(),
    }


def _questions(model: ModelAudit, task: str) -> QuestionTable | None:
    return None if model.questions is None else model.questions.get(task)


def model_format(tasks: Mapping[str, Mapping[str, Any]]) -> str:
    """``letters`` when every task of a run was a lettered question, ``cloze`` when none was, else ``mixed``."""
    lettered = [bool(metrics.get("letters")) for metrics in tasks.values()]
    return "letters" if lettered and all(lettered) else "cloze" if not any(lettered) else "mixed"


def format_notes(document: Mapping[str, Any]) -> list[str]:
    """A sentence naming each model's format when the compared runs do not all use the same one."""
    formats = {name: model["format"] for name, model in document["models"].items()}
    if len(set(formats.values())) <= 1:
        return []
    listed = ", ".join(f"{name}: {fmt}" for name, fmt in formats.items())
    return [f"These runs score their questions in different formats ({listed}). A lettered question "
            "(options in the prompt, the letter's probability) and its cloze original (each answer's text "
            "scored) are different measurements; no delta is taken between a task and its lettered variant."]


# ECE at which a cell of the decision table is shaded fully (a darker red means a worse-calibrated cell).
SHADE_FULL_ECE = 0.25


def decision_rows(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The pivoted table at the top of the page: a row per model, a cell per task with accuracy and ECE, the cell
    shaded by its ECE, and each number marked ``better``/``worse`` when its interval against the baseline excludes 0."""
    rows = []
    for name, model in document["models"].items():
        cells = {}
        for task in document["task_order"]:
            metrics = model["tasks"].get(task)
            if not metrics:
                continue
            entries = document["deltas"].get(name, {}).get(task, {})
            shade = min(max(float(metrics["ece"]), 0.0) / SHADE_FULL_ECE, 1.0) * 0.55
            cells[task] = {
                "accuracy": metrics["accuracy"], "ece": metrics["ece"],
                "style": f"background: rgba(192, 57, 43, {shade:.2f})",
                "marks": {metric: verdict(entries.get(metric), metric) for metric in ("accuracy", "ece")},
                "title": "; ".join(f"Δ {DELTA_LABELS[m]} {e['delta']:+.3f}"
                                   + (f" [{e['ci'][0]:+.3f}, {e['ci'][1]:+.3f}]" if e["ci"][0] is not None else "")
                                   for m, e in entries.items() if m in ("accuracy", "ece") and e["delta"] is not None),
            }
        rows.append({"model": name, "baseline": name == document["baseline"], "cells": cells})
    return rows


def comparison_figures(document: Mapping[str, Any]) -> dict[str, Any]:
    """``headline``: accuracy against ECE per task, each model a point with its intervals; ``overlay``: per task,
    every model's reliability curve on one pair of axes; ``per_model``: per task and model, its own diagram."""
    from first_eval.plots import ModelPoint, ReliabilityCurve, headline_svg, overlaid_reliability_svg, model_style
    from first_eval.plots import reliability_diagram_svg

    names = list(document["models"])
    headline_points: dict[str, list] = {}
    overlay: dict[str, str] = {}
    per_model: dict[str, dict[str, str]] = {}
    for task in document["task_order"]:
        curves, styles, points = [], [], []
        per_model[task] = {}
        for index, (name, model) in enumerate(document["models"].items()):
            metrics = model["tasks"].get(task)
            if not metrics:
                continue
            points.append(ModelPoint(name, float(metrics["accuracy"]), _pair(metrics.get("accuracy_ci")),
                                     float(metrics["ece"]), _pair(metrics.get("ece_ci"))))
            if "reliability" not in metrics:
                continue
            bins = metrics["reliability"]
            curve = ReliabilityCurve(
                name, np.asarray(bins["edges"], float), np.asarray(bins["counts"], float),
                _as_float_array(bins["mean_confidence"]), _as_float_array(bins["accuracy"]),
            )
            curves.append(curve)
            styles.append(model_style(index))
            per_model[task][name] = reliability_diagram_svg([curve], width_in=3.3, height_in=3.7)
        headline_points[task] = points
        if curves:
            overlay[task] = overlaid_reliability_svg(curves, styles)
    headline = headline_svg(headline_points, names, document["baseline"]) if headline_points else None
    return {"headline": headline, "overlay": overlay, "per_model": per_model}


def _pair(interval: Any) -> tuple[float | None, float | None]:
    if isinstance(interval, list) and len(interval) == 2:
        return interval[0], interval[1]
    return None, None


def _as_float_array(values: Sequence[Any]) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=float)


def render_comparison(document: Mapping[str, Any], title: str, meta: Mapping[str, Any], notes: Sequence[str] = (),
                      template: str = "compare.html.j2", context: Mapping[str, Any] | None = None) -> str:
    """The comparison page; ``template`` may extend compare.html.j2 (its ``extra_sections`` block) and use ``context``."""
    from first_eval.report import render

    return render(
        template, meta=dict(meta, title=title), doc=document, figures=comparison_figures(document),
        decision=decision_rows(document), table_metrics=TABLE_METRICS, delta_labels=DELTA_LABELS,
        higher_is_better=HIGHER_IS_BETTER, notes=list(notes), **dict(context or {}),
    )


def write_comparison(models: Sequence[ModelAudit], output_dir: Path, title: str, baseline: str | None = None,
                     command: str | None = None, notes: Sequence[str] = (), extra: Mapping[str, Any] | None = None,
                     schema: str = COMPARE_SCHEMA, template: str = "compare.html.j2",
                     context: Mapping[str, Any] | None = None,
                     settings: DeltaSettings = DeltaSettings(), fail_if_worse: Sequence[str] = ()) -> list[Path]:
    """Render and write ``report.html`` + ``metrics.json``; ``notes`` are paragraphs shown (escaped) at the top,
    ``extra`` is merged into ``metrics.json`` (whose ``schema`` is ``schema``); ``template``/``context`` as
    ``render_comparison``. ``fail_if_worse``: metrics whose
    significant worsening against the baseline fails the comparison's gate (``metrics.json`` ``gate``)."""
    from first_eval.gate import check_worse
    from first_eval.report import ReportMeta, json_ready, write_outputs_atomically

    meta = ReportMeta(title=title, model=", ".join(m.name for m in models), command=command).to_dict()
    document = build_comparison(models, baseline, settings)
    notes = [*format_notes(document), *notes]
    document["schema"] = schema
    document["meta"] = meta
    if fail_if_worse:
        document["gate"] = check_worse(document["deltas"], fail_if_worse)
    document.update(extra or {})
    document = json_ready(document)
    html = render_comparison(document, title, meta, notes, template, context)
    return write_outputs_atomically(
        Path(output_dir), {"report.html": html, "metrics.json": json.dumps(document, indent=2) + "\n"}
    )


def models_from_run_dirs(run_dirs: Sequence[Path], names: Sequence[str] | None = None) -> list[ModelAudit]:
    documents = [load_report_run(Path(d)) for d in run_dirs]
    if names is not None and len(names) != len(run_dirs):
        raise InputError(f"--names has {len(names)} name(s) for {len(run_dirs)} run folder(s)")
    labels = unique_names([_displayable(name) for name in names] if names else
                          [_displayable(model_name_for(doc, Path(d))) for doc, d in zip(documents, run_dirs)])
    return [ModelAudit(label, str(d), doc["tasks"], load_questions(Path(d), doc))
            for label, d, doc in zip(labels, run_dirs, documents)]


def load_questions(run_dir: Path, document: Mapping[str, Any]) -> dict[str, QuestionTable] | None:
    """The run's ``questions.jsonl.gz`` checked against its ``metrics.json`` (every task, the same counts), or None
    when the folder has none (an audit from before the file existed: compared unpaired)."""
    folder = run_dir if run_dir.is_dir() else run_dir.parent
    path = folder / QUESTIONS_FILE
    if not path.exists():
        return None
    tables = read_questions(path)
    for task, metrics in document["tasks"].items():
        table = tables.get(task)
        if table is None or table.n != metrics["n"]:
            held = "no question" if table is None else f"{table.n} question(s)"
            raise InputError(f"{path}: holds {held} of task {task!r} but metrics.json says {metrics['n']}; "
                             "the two files are from different audits (rerun `first report` into the folder)")
    return tables
