"""The before/after report of ``first distill``: ``report.html`` + ``metrics.json`` (schema ``first.distill/1``).

The page is first_eval's comparison page (models × tasks table, deltas against the CE student, reliability
diagrams side by side) extended by ``distill.html.j2``: training curves, the knowledge-store statistics, the
teacher temperature and its evidence, and how each number was produced.

``metrics.json``::

    {"schema": "first.distill/1", "baseline": "ce", "task_order": [...],
     "models": {NAME: {"source": DIR, "tasks": {TASK: {same keys as first.report/1}}}},
     "deltas": {NAME: {TASK: {metric: NAME - baseline}}},
     "distill": {"teacher_temperature": {...}, "stores": {KIND: {...}}, "students": {VARIANT: {...}},
                 "claims": [{"task", "claim", "first", "other", "holds"}], "seconds": {...}, "config": {...}},
     "meta": {...}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from first_distill.pipeline import SCHEMA, TEACHER, TEACHER_TS
from first_distill.variants import VARIANTS

CE_BASELINE = "ce"


def store_summary(folder: Path) -> dict[str, Any]:
    """What a reviewer wants to know of one knowledge store (from its manifest)."""
    from first_distill.knowledge import KnowledgeStore

    store = KnowledgeStore.open(folder)
    stats = store.stats
    mass = stats.get("topk_mass") or {}
    return {"folder": str(folder), "selection": store.selection, "k": store.k,
            "temperature": store.temperature, "n_sequences": store.n_sequences,
            "n_positions": store.n_positions, "topk_mass_mean": mass.get("mean"),
            "topk_mass_p10": mass.get("p10"), "top1_prob_mean": stats.get("top1_prob_mean"),
            "sampled_teacher_mass_mean": (stats.get("extraction") or {}).get("sampled_teacher_mass_mean"),
            "bytes_per_position": stats.get("bytes_per_position"),
            "positions_per_second": (stats.get("extraction") or {}).get("positions_per_second")}


def training_curves(trained: Any) -> dict[str, list[tuple[float, float]]]:
    """{variant: [(step, loss), ...]} from each student's training_log.json."""
    curves = {}
    for student in trained.students:
        try:
            log = json.loads(Path(student.log_path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        curves[student.variant] = [(float(e["step"]), float(e["loss"])) for e in log.get("steps", []) if "loss" in e]
    return curves


def claim_checks(models: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per task, the FIRST paper's claims on this run: ECE(first) < ECE(ce), ECE(first) < ECE(topk-notemp),
    accuracy(first) >= accuracy(ce). ``models``: {name: {task: metrics}}; checks whose rows are absent are skipped."""
    checks = []
    first = models.get("first") or {}
    for task, mine in first.items():
        for other, metric, relation in (("ce", "ece", "<"), ("topk-notemp", "ece", "<"), ("ce", "accuracy", ">=")):
            theirs = (models.get(other) or {}).get(task)
            if theirs is None or mine.get(metric) is None or theirs.get(metric) is None:
                continue
            a, b = float(mine[metric]), float(theirs[metric])
            checks.append({"task": task, "claim": f"{metric}(first) {relation} {metric}({other})", "first": a,
                           "other": b, "holds": a < b if relation == "<" else a >= b})
    return checks


def provenance(config: Any, temperature: Any) -> list[str]:
    """How each number was produced, one sentence per row kind."""
    train = (f"the training splits of {', '.join(config.train_tasks)}" if config.train_tasks
             else f"the pairs in {config.train}")
    lines = [
        f"Every model is audited by lm-eval (0-shot) on {', '.join(config.eval_tasks)}; each question's choice "
        "log-likelihoods (summed over the answer's tokens, as lm-eval's acc) are turned into probabilities by a softmax "
        "over the choices, and the calibration core computes accuracy, ECE (15 equal-width bins) with a 95% bootstrap "
        "interval, Brier and NLL.",
        f"teacher: the fine-tuned teacher as it is. teacher+ts: the same scores divided by T = {temperature.value:.4g} "
        f"({temperature.label}); this T also tempers the stored teacher distribution.",
    ]
    for name in config.variants:
        variant = VARIANTS[name]
        lines.append(f"{name}: {variant.summary}; trained on {train} from {config.student}.")
    return lines


def write_distill_report(audits: Mapping[str, Sequence[Any]], report_dir: Path, *, output: Path, config: Any,
                         temperature: Any, trained: Any, stores: Mapping[str, Path], seconds: Mapping[str, float],
                         notes: Sequence[str], title: str, command: str,
                         extra: Mapping[str, Any] | None = None) -> tuple[Path, dict[str, Any]]:
    """Write report.html + metrics.json into ``report_dir`` (atomically); ``extra`` is merged into metrics.json.
    Returns the report path and the ``models`` section ({name: {"source", "tasks"}})."""
    from first_eval.compare import ModelAudit, write_comparison
    from first_eval.plots import training_curves_svg
    from first_eval.report import ReportMeta, metrics_document, write_report

    model_audits = []
    for name, task_audits in audits.items():
        folder = Path(output) / "audits" / name
        meta = ReportMeta(title=f"{title}: {name}", model=name, command=command)
        write_report(list(task_audits), folder, meta)
        model_audits.append(ModelAudit(name, str(folder), metrics_document(list(task_audits), meta)["tasks"]))
    baseline = CE_BASELINE if CE_BASELINE in audits else (TEACHER if TEACHER in audits else next(iter(audits)))
    claims = claim_checks({m.name: m.tasks for m in model_audits})
    curves = training_curves(trained)
    store_rows = {kind: store_summary(folder) for kind, folder in stores.items()}
    students = {s.variant: s.to_dict() for s in trained.students}
    document_extra = {**dict(extra or {}), "distill": {
        "teacher_temperature": temperature.to_dict(), "stores": store_rows, "students": students,
        "training_curves": curves, "claims": claims, "seconds": dict(seconds), "config": config.to_dict(),
        "rows": {TEACHER: "the teacher, untempered", TEACHER_TS: "the teacher's choice scores divided by T",
                 **{name: VARIANTS[name].summary for name in config.variants}},
    }}
    context = {
        "curves_svg": training_curves_svg(curves, ylabel="training loss")
        if any(curves.values()) else None,
        "stores": store_rows, "students": students, "temperature": temperature.to_dict(),
        "provenance": provenance(config, temperature), "seconds": dict(seconds), "claims": claims,
    }
    paths = write_comparison(model_audits, Path(report_dir), title=title, baseline=baseline, command=command,
                             notes=notes, extra=document_extra, schema=SCHEMA, template="distill.html.j2", context=context)
    models = {m.name: {"source": m.source, "tasks": m.tasks} for m in model_audits}
    return next(path for path in paths if path.name == "report.html"), models
