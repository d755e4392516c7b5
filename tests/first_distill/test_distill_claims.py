"""The distill report's claims judged against the noise (issue 12): each claim holds, holds within noise, fails
within noise or fails by its paired interval; the summary counts each kind, the printed line too."""

from __future__ import annotations

import json

import pytest

from first_distill.cli import print_distill_summary
from first_distill.distill_report import CLAIM_VERDICTS, claim_checks, claim_verdict, claims_summary
from first_eval.audit import AuditConfig, audit_task
from first_eval.compare import ModelAudit
from first_eval.deltas import DeltaSettings
from first_eval.lm_eval_bridge.samples import task_samples_from_records
from first_eval.report import ReportMeta, metrics_document
from first_demo.synthetic import SyntheticTask


@pytest.mark.parametrize("delta, interval, relation, verdict", [
    (-0.05, (-0.08, -0.02), "<", "holds"),
    (-0.01, (-0.04, 0.02), "<", "holds within noise"),
    (0.01, (-0.02, 0.04), "<", "fails within noise"),
    (0.05, (0.02, 0.08), "<", "fails"),
    (0.0, (0.0, 0.0), "<", "fails within noise"),  # identical models: not better calibrated
    (0.0, (0.0, 0.0), ">=", "holds"),  # identical models: no accuracy lost
    (0.02, (0.0, 0.05), ">=", "holds"),
    (0.01, (-0.02, 0.04), ">=", "holds within noise"),
    (-0.01, (-0.04, 0.02), ">=", "fails within noise"),
    (-0.05, (-0.08, -0.02), ">=", "fails"),
    (-0.05, (None, None), "<", "holds within noise"),  # --bootstrap 0: nothing is beyond noise
])
def test_claim_verdicts(delta, interval, relation, verdict):
    assert claim_verdict(delta, interval, relation) == verdict


def model(name, sharpness, n=300):
    records = SyntheticTask("task", n, (4,), sharpness=sharpness).records(seed=4)
    audit = audit_task(task_samples_from_records(records, "task", name), AuditConfig(n_bootstrap=0, n_folds=3))
    return ModelAudit(name, name, metrics_document([audit], ReportMeta(name))["tasks"], {"task": audit.questions})


def test_claims_on_models_with_planted_calibration():
    """first is the calibrated model; ce is 3x sharper (far worse calibrated, same answers); topk-notemp is first."""
    first = model("first", 1.0)
    models = [first, model("ce", 3.0), ModelAudit("topk-notemp", "x", first.tasks, first.questions)]
    claims = claim_checks(models, DeltaSettings(n_bootstrap=300, seed=1))
    verdicts = {claim["claim"]: claim["verdict"] for claim in claims}
    assert verdicts == {"ece(first) < ece(ce)": "holds", "ece(first) < ece(topk-notemp)": "fails within noise",
                        "accuracy(first) >= accuracy(ce)": "holds"}
    same = next(c for c in claims if c["claim"] == "ece(first) < ece(topk-notemp)")
    assert same["delta"]["delta"] == 0.0 and same["delta"]["ci"] == [0.0, 0.0] and same["delta"]["paired"]
    assert claims_summary(claims) == "2 hold, 0 hold within noise, 1 fails within noise, 0 fail (of 3 comparisons)"


def write_document(tmp_path, claims):
    document = {"schema": "first.distill/2", "task_order": ["task"],
                "models": {"first": {"tasks": {"task": {"accuracy": 0.8, "ece": 0.05}}}}, "distill": {"claims": claims}}
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(document))
    return path


def test_the_printed_summary_counts_each_kind(tmp_path, capsys):
    claims = [{"verdict": verdict, "holds": verdict.startswith("holds")} for verdict in CLAIM_VERDICTS for _ in range(2)]
    print_distill_summary(write_document(tmp_path, claims[:-1]))
    err = capsys.readouterr().err
    assert "the paper's claims: 2 hold, 2 hold within noise, 2 fail within noise, 1 fails (of 7 comparisons)" in err


def test_a_first_distill_1_document_still_prints(tmp_path, capsys):
    """Written before verdicts existed: the point comparisons only, said so."""
    print_distill_summary(write_document(tmp_path, [{"holds": True}, {"holds": False}, {"holds": True}]))
    assert "held in 2 of 3 comparisons (point estimates only)" in capsys.readouterr().err
