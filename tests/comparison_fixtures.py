"""A comparison the size of the demo's (12 models x 4 tasks) from synthetic audits, for the page-size and
first-screen checks (tests/first_eval/test_compare_size.py, tests/test_browser.py)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from first_eval.audit import AuditConfig, audit_task
from first_eval.compare import ModelAudit, write_comparison
from first_eval.deltas import DeltaSettings
from first_eval.lm_eval_bridge.samples import task_samples_from_records
from first_eval.report import ReportMeta, metrics_document
from first_demo.synthetic import SyntheticTask

DEMO_MODELS = ("teacher", "teacher+ts", "student-base", "teacher-base", "bayes-optimal", "first", "ce",
               "label-smoothing", "topk-notemp", "topk-tail", "rs-kd", "full-kd")
DEMO_TASKS = ("first_demo_boolq", "first_demo_boolq_ood", "first_demo_csqa", "first_demo_csqa_ood")


def demo_sized_models(n_questions: int = 200, bootstrap: int = 30) -> list[ModelAudit]:
    """Twelve synthetic models (sharpness 0.8 to 3.0) on four tasks of 2 or 5 choices, with their questions
    (temperature scaling the only calibrator, few resamples: the page's size and layout are what is checked)."""
    models = []
    for index, name in enumerate(DEMO_MODELS):
        sharpness = 0.8 + 0.2 * index
        audits = []
        for task_index, task in enumerate(DEMO_TASKS):
            records = SyntheticTask(task, n_questions, (2,) if "boolq" in task else (5,), sharpness=sharpness).records(
                seed=task_index)
            audits.append(audit_task(task_samples_from_records(records, task, name),
                                     AuditConfig(n_bootstrap=bootstrap, n_folds=3, seed=0, calibrators=("temperature",))))
        meta = ReportMeta(name, model=name)
        models.append(ModelAudit(name, name, metrics_document(audits, meta)["tasks"],
                                 {audit.task: audit.questions for audit in audits}))
    return models


@functools.lru_cache(maxsize=None)
def demo_sized_page(template: str = "distill.html.j2") -> Path:
    """``write_demo_sized_comparison`` into a temporary folder, once per test process (it takes ~20 s)."""
    return write_demo_sized_comparison(Path(tempfile.mkdtemp(prefix="first-demo-sized-")), template)


def write_demo_sized_comparison(output: Path, template: str = "compare.html.j2") -> Path:
    """The comparison page of ``demo_sized_models`` against ``ce``; ``distill.html.j2`` adds the distill sections
    (with empty stores, students and claims)."""
    context = None
    if template == "distill.html.j2":
        context = {"curves_svg": None, "stores": {}, "students": {}, "seconds": {"audits": 1.0}, "claims": [],
                   "claims_summary": "", "provenance": ["synthetic models"],
                   "temperature": {"value": 2.0, "source": "auto", "task": None, "ece_before": None, "ece_after": None}}
    write_comparison(demo_sized_models(), output, "first demo (synthetic, demo-sized)", baseline="ce",
                     notes=["The demo's note paragraph."], template=template, context=context,
                     settings=DeltaSettings(n_bootstrap=200, seed=0))
    return output / "report.html"
