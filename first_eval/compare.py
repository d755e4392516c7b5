"""Compare audits of several models: models x tasks table, side-by-side diagrams, deltas to a baseline.

Input is what ``first report`` wrote (``metrics.json`` of schema ``first.report/1``), so any two runs
can be compared later without re-running a model. ``build_comparison`` is pure; ``write_comparison``
renders and writes atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from first_eval.errors import InputError
from first_eval.lm_eval_bridge.lettered import LETTERED_SUFFIX

COMPARE_SCHEMA = "first.compare/1"
# Metrics shown in the table and differenced against the baseline; lower is better except where noted.
TABLE_METRICS = ("accuracy", "ece", "brier", "nll")
HIGHER_IS_BETTER = {"accuracy", "auroc"}
DELTA_METRICS = ("accuracy", "ece", "ece_equal_mass", "mce", "brier", "nll", "auroc", "mean_confidence")


@dataclass(frozen=True)
class ModelAudit:
    """One model's ``first.report/1`` document under the name it is shown with."""

    name: str
    source: str
    tasks: dict[str, dict[str, Any]]


def load_report_run(run_dir: Path) -> dict[str, Any]:
    """Read ``RUN_DIR/metrics.json`` written by ``first report``."""
    path = run_dir / "metrics.json" if run_dir.is_dir() else run_dir
    if not path.exists():
        raise InputError(f"{run_dir}: no metrics.json here; run `first report ... --output {run_dir}` first")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(document, dict) or document.get("schema") != "first.report/1":
        schema = document.get("schema") if isinstance(document, dict) else None
        raise InputError(f"{path}: schema is {schema!r}, expected 'first.report/1' (a metrics.json from `first report`)")
    return document


def model_name_for(document: Mapping[str, Any], run_dir: Path) -> str:
    model = (document.get("meta") or {}).get("model")
    return str(model) if model else run_dir.name


def unique_names(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def build_comparison(models: Sequence[ModelAudit], baseline: str | None = None) -> dict[str, Any]:
    """The combined document: every model's tasks, plus each model's deltas against the baseline."""
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
    deltas: dict[str, dict[str, dict[str, float | None]]] = {}
    for model in models:
        if model.name == baseline:
            continue
        deltas[model.name] = {}
        for task in tasks:
            if task in model.tasks and task in base.tasks:
                deltas[model.name][task] = {
                    metric: _difference(model.tasks[task].get(metric), base.tasks[task].get(metric)) for metric in DELTA_METRICS
                }
    return {
        "schema": COMPARE_SCHEMA,
        "baseline": baseline,
        "task_order": tasks,
        "models": {m.name: {"source": m.source, "tasks": m.tasks, "format": model_format(m.tasks)} for m in models},
        "deltas": deltas,
    }


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


def _difference(value: Any, reference: Any) -> float | None:
    if value is None or reference is None:
        return None
    return float(value) - float(reference)


def comparison_figures(document: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Per task, per model: a reliability diagram (raw scores) with identical axes."""
    from first_eval.plots import ReliabilityCurve, reliability_diagram_svg

    figures: dict[str, dict[str, str]] = {}
    for task in document["task_order"]:
        figures[task] = {}
        for name, model in document["models"].items():
            metrics = model["tasks"].get(task)
            if not metrics or "reliability" not in metrics:
                continue
            bins = metrics["reliability"]
            curve = ReliabilityCurve(
                name, np.asarray(bins["edges"], float), np.asarray(bins["counts"], float),
                _as_float_array(bins["mean_confidence"]), _as_float_array(bins["accuracy"]),
            )
            figures[task][name] = reliability_diagram_svg([curve], width_in=3.3, height_in=3.7)
    return figures


def _as_float_array(values: Sequence[Any]) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=float)


def render_comparison(document: Mapping[str, Any], title: str, meta: Mapping[str, Any], notes: Sequence[str] = (),
                      template: str = "compare.html.j2", context: Mapping[str, Any] | None = None) -> str:
    """The comparison page; ``template`` may extend compare.html.j2 (its ``extra_sections`` block) and use ``context``."""
    from first_eval.report import render

    return render(
        template, meta=dict(meta, title=title), doc=document, figures=comparison_figures(document),
        table_metrics=TABLE_METRICS, higher_is_better=HIGHER_IS_BETTER, notes=list(notes), **dict(context or {}),
    )


def write_comparison(models: Sequence[ModelAudit], output_dir: Path, title: str, baseline: str | None = None,
                     command: str | None = None, notes: Sequence[str] = (), extra: Mapping[str, Any] | None = None,
                     schema: str = COMPARE_SCHEMA, template: str = "compare.html.j2",
                     context: Mapping[str, Any] | None = None) -> list[Path]:
    """Render and write ``report.html`` + ``metrics.json``; ``notes`` are paragraphs shown (escaped) at the top,
    ``extra`` is merged into ``metrics.json`` (whose ``schema`` is ``schema``); ``template``/``context`` as
    ``render_comparison``."""
    from first_eval.report import ReportMeta, json_ready, write_outputs_atomically

    meta = ReportMeta(title=title, model=", ".join(m.name for m in models), command=command).to_dict()
    document = build_comparison(models, baseline)
    notes = [*format_notes(document), *notes]
    document["schema"] = schema
    document["meta"] = meta
    document.update(extra or {})
    html = render_comparison(document, title, meta, notes, template, context)
    return write_outputs_atomically(
        Path(output_dir), {"report.html": html, "metrics.json": json.dumps(json_ready(document), indent=2) + "\n"}
    )


def models_from_run_dirs(run_dirs: Sequence[Path], names: Sequence[str] | None = None) -> list[ModelAudit]:
    documents = [load_report_run(Path(d)) for d in run_dirs]
    if names is not None and len(names) != len(run_dirs):
        raise InputError(f"--names has {len(names)} name(s) for {len(run_dirs)} run folder(s)")
    labels = unique_names(list(names) if names else [model_name_for(doc, Path(d)) for doc, d in zip(documents, run_dirs)])
    return [ModelAudit(label, str(d), doc["tasks"]) for label, d, doc in zip(labels, run_dirs, documents)]
