"""The per-question file of an audit (questions.jsonl.gz): what it holds, read back exactly, pairing by doc_id."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from first_eval.audit import AuditConfig, audit_task
from first_eval.calibrators import cross_fit
from first_eval.errors import InputError
from first_eval.lm_eval_bridge.samples import task_samples_from_records
from first_eval.questions import QUESTIONS_FILE, common_questions, questions_bytes, read_questions
from first_eval.report import ReportMeta, write_report
from first_demo.synthetic import SyntheticTask

CONFIG = AuditConfig(n_bootstrap=0, n_folds=3, seed=1)


def audit_of(records, task="synth_q"):
    return audit_task(task_samples_from_records(records, task, "test"), CONFIG)


@pytest.fixture(scope="module")
def records():
    return SyntheticTask("synth_q", 120, (2, 3, 4), sharpness=2.0).records(seed=5)


def test_the_audit_keeps_each_questions_answer_and_its_cross_fitted_confidence(records):
    audit = audit_of(records)
    table = audit.questions
    samples = task_samples_from_records(records, "synth_q", "test")
    probs = samples.choice_scores("sum").probabilities()
    assert np.array_equal(table.doc_ids, np.arange(120)) and np.array_equal(table.gold, samples.gold)
    assert np.array_equal(table.chosen, probs.predictions) and np.array_equal(table.choice_probs, probs.choice_probs)
    assert np.array_equal(table.confidence, probs.confidences)
    crossed = cross_fit("temperature", samples.choice_scores("sum"), n_folds=3, seed=1)
    assert np.array_equal(table.confidence_ts, crossed.probs.confidences)
    # the paired metrics of the table are the audit's own numbers
    outcomes = table.outcomes(n_bins=CONFIG.n_bins)
    assert outcomes.correct.mean() == pytest.approx(audit.metrics.accuracy.value, abs=1e-15)
    assert outcomes.brier.mean() == pytest.approx(audit.metrics.brier.value, abs=1e-12)
    assert outcomes.nll.mean() == pytest.approx(audit.metrics.nll.value, abs=1e-12)


def test_report_writes_the_file_and_it_reads_back_exactly(records, tmp_path):
    audits = [audit_of(records), audit_of(records[:50], task="other")]
    write_report(audits, tmp_path, ReportMeta("t"))
    document = json.loads((tmp_path / "metrics.json").read_text())
    assert document["questions"]["file"] == QUESTIONS_FILE and document["schema"] == "first.report/1"
    tables = read_questions(tmp_path / QUESTIONS_FILE)
    assert set(tables) == {"synth_q", "other"} and tables["other"].n == 50
    for audit in audits:
        back, original = tables[audit.task], audit.questions
        for field in ("doc_ids", "gold", "chosen", "confidence", "choice_probs", "offsets", "confidence_ts"):
            assert np.array_equal(getattr(back, field), getattr(original, field)), field  # exact float64 values
    # the same audit gives the same bytes (gzip header without a time stamp)
    assert questions_bytes({a.task: a.questions for a in audits}) == (tmp_path / QUESTIONS_FILE).read_bytes()
    first_line = json.loads(gzip.decompress((tmp_path / QUESTIONS_FILE).read_bytes()).splitlines()[0])
    assert list(first_line) == ["task", "doc_id", "gold", "chosen", "confidence", "probs", "confidence_ts"]


def test_pairing_on_doc_ids_keeps_the_common_questions_with_the_same_gold(records):
    base = audit_of(records).questions
    shifted = [dict(r) for r in records[30:] + records[:10]]  # another order, questions 10..29 missing
    changed = dict(shifted[0], doc_id=30)
    gold = int(changed["target"])
    changed["target"] = str((gold + 1) % len(changed["doc"]["choices"]))  # doc_id 30: a different gold answer
    model = audit_of([changed, *shifted[1:]]).questions
    pairing = common_questions(model, base)
    assert (pairing.n, pairing.n_model, pairing.n_base, pairing.n_disagreeing) == (99, 100, 120, 1)
    assert not pairing.complete
    assert np.array_equal(model.doc_ids[pairing.model_index], base.doc_ids[pairing.base_index])
    assert 30 not in set(base.doc_ids[pairing.base_index])
    assert list(base.doc_ids[pairing.base_index][:12]) == [*range(10), 31, 32]  # the baseline's order


def write_gz(path, lines):
    path.write_bytes(gzip.compress("".join(lines).encode()))
    return path


@pytest.mark.parametrize("lines, needle", [
    (['{"task": "t", "doc_id": 1, "gold": 0, "chosen": 0, "confidence": 0.6, "probs": [0.6, 0.4]}\n',
      '{"task": "t", "doc_id": 1, "gold": 0, "chosen": 0, "confidence": 0.6, "probs": [0.6, 0.4]}\n'],
     "line 2: task 't' doc_id 1 appears twice"),
    (['{"task": "t", "doc_id": 1, "gold": 2, "chosen": 0, "confidence": 0.6, "probs": [0.6, 0.4]}\n'],
     "line 1: field 'gold' is 2, not a choice index in 0..1"),
    (['{"task": "t", "doc_id": "x", "gold": 0, "chosen": 0, "confidence": 0.6, "probs": [0.6, 0.4]}\n'],
     "field 'doc_id' is 'x', not an integer"),
    (['{"task": "t", "doc_id": 1, "gold": 0, "chosen": 0, "confidence": 1.5, "probs": [0.6, 0.4]}\n'],
     "field 'confidence' is 1.5, not a probability"),
    (['{"task": "t", "doc_id": 1, "gold": 0, "chosen": 0, "confidence": 0.6, "probs": [0.6]}\n'],
     "field 'probs' is [0.6], not a list of two or more probabilities"),
    (["[1, 2]\n"], "line 1: not a JSON object"),
])
def test_a_damaged_file_is_refused_naming_the_line(tmp_path, lines, needle):
    with pytest.raises(InputError, match=needle.replace("[", r"\[").replace("(", r"\(")):
        read_questions(write_gz(tmp_path / QUESTIONS_FILE, lines))


def test_a_file_that_is_not_gzip_is_refused(tmp_path):
    (tmp_path / QUESTIONS_FILE).write_text('{"task": "t"}\n')
    with pytest.raises(InputError, match="not a readable gzip file"):
        read_questions(tmp_path / QUESTIONS_FILE)
    (tmp_path / QUESTIONS_FILE).write_bytes(gzip.compress(b'{"task": "t", "doc_id": 1}\n')[:-9])  # truncated
    with pytest.raises(InputError, match="not a readable gzip file|field"):
        read_questions(tmp_path / QUESTIONS_FILE)
