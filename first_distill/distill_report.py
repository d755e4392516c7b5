"""The before/after report of ``first distill``: ``report.html`` + ``metrics.json`` (schema ``first.distill/2``).

The page is first_eval's comparison page (the decision screen, deltas against the CE student with paired
intervals, reliability diagrams) extended by ``distill.html.j2``: the paper's claims judged against the noise,
training curves, the knowledge-store statistics, the teacher temperature and its evidence, and how each number
was produced.

``metrics.json`` (``/1`` had bare floats as deltas and claims with only ``holds``)::

    {"schema": "first.distill/2", "baseline": "ce", "task_order": [...],
     "models": {NAME: {"source": DIR, "tasks": {TASK: {same keys as first.report/1}}, "questions": true}},
     "deltas": {NAME: {TASK: {METRIC: {"delta", "ci": [low, high], "paired", "n", "excludes_zero"}}}},
     "pairing": {NAME: {TASK: {"paired", "n", "note"}}}, "bootstrap": {...},
     "distill": {"teacher_temperature": {...}, "stores": {KIND: {...}}, "students": {VARIANT: {...}},
                 "claims": [{"task", "claim", "first", "other", "holds", "verdict", "delta": {...}}],
                 "claim_counts": {VERDICT: count}, "seconds": {...}, "config": {...}},
     "meta": {...}}

A claim's ``verdict`` is one of ``CLAIM_VERDICTS``: it holds (the paired interval of the difference lies on the
claim's side of 0), holds within noise (the point difference agrees, the interval straddles 0), fails within
noise, or fails (the interval lies on the other side). ``holds`` is the point comparison alone, as in ``/1``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from first_distill.run_layout import REPORT_FILE, TEACHER, TEACHER_TS, audit_folder
from first_distill.variants import VARIANTS

CE_BASELINE = "ce"
# The report's schema; the run's settings file (distill_config.json) keeps run_layout.SCHEMA, so runs resume.
REPORT_SCHEMA = "first.distill/2"
CLAIM_VERDICTS = ("holds", "holds within noise", "fails within noise", "fails")
# FIRST (Shum et al., 2024): better calibrated than the CE student and than top-k without temperature, no
# accuracy lost: (other model, metric, relation of first's metric to the other's).
PAPER_CLAIMS = (("ce", "ece", "<"), ("topk-notemp", "ece", "<"), ("ce", "accuracy", ">="))


def store_summary(folder: Path) -> dict[str, Any]:
    """What a reviewer wants to know of one knowledge store (from its manifest)."""
    from first_distill.store import KnowledgeStore

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


def claim_checks(models: Sequence[Any], settings: Any) -> list[dict[str, Any]]:
    """Per task, the FIRST paper's claims on this run (``PAPER_CLAIMS``), each with the paired difference of
    ``first`` to the other model and its verdict. ``models``: ``ModelAudit``s; checks whose rows are absent
    are skipped."""
    from first_eval.deltas import task_deltas

    by_name = {model.name: model for model in models}
    first = by_name.get("first")
    if first is None:
        return []
    checks = []
    for task, mine in first.tasks.items():
        for other_name, metric, relation in PAPER_CLAIMS:
            other = by_name.get(other_name)
            theirs = None if other is None else other.tasks.get(task)
            if theirs is None or mine.get(metric) is None or theirs.get(metric) is None:
                continue
            delta = task_deltas(mine, theirs, _questions(first, task), _questions(other, task), settings,
                                missing=" and ".join(m.name for m in (first, other) if m.questions is None))
            entry = delta.deltas[metric]
            a, b = float(mine[metric]), float(theirs[metric])
            checks.append({"task": task, "claim": f"{metric}(first) {relation} {metric}({other_name})", "first": a,
                           "other": b, "holds": a < b if relation == "<" else a >= b,
                           "verdict": claim_verdict(entry.delta, entry.ci, relation), "delta": entry.to_dict()})
    return checks


def claim_verdict(delta: float | None, interval: Sequence[float | None], relation: str) -> str:
    """One of ``CLAIM_VERDICTS`` for a claim ``first RELATION other`` given ``delta = first - other`` and its interval.

    Without an interval (``--bootstrap 0``) nothing shows the claim beyond noise: it holds or fails within noise."""
    from first_eval.metrics.paired import NUMERICAL_ZERO

    low, high = interval
    if relation == "<":
        beyond, against, point = (high is not None and high < -NUMERICAL_ZERO), (low is not None and low > NUMERICAL_ZERO), \
            (delta is not None and delta < 0)
    else:  # ">=": first at least as good
        beyond, against, point = (low is not None and low >= -NUMERICAL_ZERO), (high is not None and high < -NUMERICAL_ZERO), \
            (delta is not None and delta >= -NUMERICAL_ZERO)
    if beyond:
        return "holds"
    if against:
        return "fails"
    return "holds within noise" if point else "fails within noise"


def claim_counts(claims: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """{verdict: how many claims got it}, every verdict listed."""
    return {verdict: sum(claim.get("verdict") == verdict for claim in claims) for verdict in CLAIM_VERDICTS}


def claims_summary(claims: Sequence[Mapping[str, Any]]) -> str:
    """"3 hold, 4 hold within noise, 1 fails within noise, 0 fail (of 8 comparisons)" (a /1 document: held in k of n)."""
    if claims and any("verdict" not in claim for claim in claims):
        return f"held in {sum(bool(c.get('holds')) for c in claims)} of {len(claims)} comparisons (point estimates only)"
    counts = claim_counts(claims)
    words = {"holds": ("holds", "hold"), "holds within noise": ("holds within noise", "hold within noise"),
             "fails within noise": ("fails within noise", "fail within noise"), "fails": ("fails", "fail")}
    return ", ".join(f"{n} {words[v][0] if n == 1 else words[v][1]}" for v, n in counts.items()) + \
        f" (of {len(claims)} comparisons)"


def _questions(model: Any, task: str) -> Any:
    return None if model.questions is None else model.questions.get(task)


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
    from first_eval.deltas import DeltaSettings
    from first_distill.distill_plots import training_curves_svg
    from first_eval.report import ReportMeta, metrics_document, write_report

    model_audits = []
    for name, task_audits in audits.items():
        folder = audit_folder(output, name)
        meta = ReportMeta(title=f"{title}: {name}", model=name, command=command)
        write_report(list(task_audits), folder, meta)
        questions = {audit.task: audit.questions for audit in task_audits}
        model_audits.append(ModelAudit(name, str(folder), metrics_document(list(task_audits), meta)["tasks"],
                                       questions if all(q is not None for q in questions.values()) else None))
    baseline = CE_BASELINE if CE_BASELINE in audits else (TEACHER if TEACHER in audits else next(iter(audits)))
    settings = DeltaSettings(n_bootstrap=config.n_bootstrap, seed=config.settings.seed)
    claims = claim_checks(model_audits, settings)
    curves = training_curves(trained)
    store_rows = {kind: store_summary(folder) for kind, folder in stores.items()}
    students = {s.variant: s.to_dict() for s in trained.students}
    document_extra = {**dict(extra or {}), "distill": {
        "teacher_temperature": temperature.to_dict(), "stores": store_rows, "students": students,
        "training_curves": curves, "claims": claims, "claim_counts": claim_counts(claims), "seconds": dict(seconds),
        "config": config.to_dict(),
        "rows": {TEACHER: "the teacher, untempered", TEACHER_TS: "the teacher's choice scores divided by T",
                 **{name: VARIANTS[name].summary for name in config.variants}},
    }}
    context = {
        "curves_svg": training_curves_svg(curves, ylabel="training loss")
        if any(curves.values()) else None,
        "stores": store_rows, "students": students, "temperature": temperature.to_dict(),
        "provenance": provenance(config, temperature), "seconds": dict(seconds), "claims": claims,
        "claims_summary": claims_summary(claims),
    }
    paths = write_comparison(model_audits, Path(report_dir), title=title, baseline=baseline, command=command,
                             notes=notes, extra=document_extra, schema=REPORT_SCHEMA, template="distill.html.j2",
                             context=context, settings=settings)
    models = {m.name: {"source": m.source, "tasks": m.tasks} for m in model_audits}
    return next(path for path in paths if path.name == REPORT_FILE), models
