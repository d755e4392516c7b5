"""`first compare` pairs the questions of two audits on their doc_ids (issue 12): paired intervals on the common
questions, unpaired when none are common or an audit predates questions.jsonl.gz, and the --fail-if-worse gate."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from first_eval.cli import app
from first_eval.questions import QUESTIONS_FILE
from first_demo.synthetic import SyntheticTask

runner = CliRunner()
TASK = "shared_task"


def report_run(tmp_path, name, sharpness, keep=lambda doc_id: True, shift=0, bootstrap="0"):
    """A `first report` folder of a synthetic model; ``keep`` picks doc_ids, ``shift`` renumbers them."""
    records = [dict(r, doc_id=r["doc_id"] + shift) for r in SyntheticTask(TASK, 400, (4,), sharpness=sharpness).records(seed=2)
               if keep(r["doc_id"])]
    samples = tmp_path / f"s_{name}" / f"samples_{TASK}_2026-01-01T00-00-00.000000.jsonl"
    samples.parent.mkdir(parents=True)
    samples.write_text("".join(json.dumps(r) + "\n" for r in records))
    output = tmp_path / name
    result = runner.invoke(app, ["report", "--samples", str(samples), "--output", str(output), "--bootstrap", bootstrap])
    assert result.exit_code == 0, result.output
    return output


def compare(tmp_path, *runs, extra=()):
    output = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", *map(str, runs), "--output", str(output), "--bootstrap", "300", *extra])
    document = json.loads((output / "metrics.json").read_text()) if (output / "metrics.json").exists() else None
    return result, document


def test_two_audits_of_the_same_model_differ_by_exactly_zero(tmp_path):
    a = report_run(tmp_path, "a", 2.0)
    b = tmp_path / "b"
    shutil.copytree(a, b)
    result, document = compare(tmp_path, a, b, extra=["--names", "a,b", "--fail-if-worse", "ece,brier,nll,accuracy"])
    assert result.exit_code == 0, result.output
    entries = document["deltas"]["b"][TASK]
    assert set(entries) == {"accuracy", "ece", "ece_calibrated", "brier", "nll", "mean_confidence"}
    for metric, entry in entries.items():
        assert (entry["delta"], entry["ci"], entry["paired"], entry["n"]) == (0.0, [0.0, 0.0], True, 400), metric
    assert document["gate"] == {"fail_if_worse": ["ece", "brier", "nll", "accuracy"], "passed": True, "failures": []}
    assert "b vs a: no significant difference on 1 task(s)" in result.stderr
    html = (tmp_path / "cmp" / "report.html").read_text()
    assert "class=\"mark" not in html  # no cell of the decision table is marked better or worse


def test_a_worse_model_fails_the_gate_and_the_report_is_still_written(tmp_path):
    base, worse = report_run(tmp_path, "base", 1.0), report_run(tmp_path, "sharp", 3.0)
    result, document = compare(tmp_path, base, worse, extra=["--fail-if-worse", "ece,accuracy"])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("worse than base")]
    assert len(lines) == 1 and "sharp on shared_task: ece +" in lines[0] and "accuracy" not in lines[0]
    assert document["gate"]["passed"] is False and document["gate"]["failures"][0]["metric"] == "ece"
    assert document["deltas"]["sharp"][TASK]["ece"]["ci"][0] > 0
    html = (tmp_path / "cmp" / "report.html").read_text()
    assert "Gate --fail-if-worse ece,accuracy" in html
    assert html.count('class="mark worse"') == 1  # the sharp model's ECE cell in the decision table


def test_different_question_sets_pair_on_the_common_doc_ids(tmp_path):
    base = report_run(tmp_path, "base", 1.0, keep=lambda d: d < 300)
    model = report_run(tmp_path, "model", 2.0, keep=lambda d: d >= 100)
    result, document = compare(tmp_path, base, model)
    assert result.exit_code == 0, result.output
    pairing = document["pairing"]["model"][TASK]
    assert pairing["paired"] and pairing["n"] == 200
    assert "paired on the 200 questions both answered (of 300 and 300)" in pairing["note"]
    assert document["deltas"]["model"][TASK]["accuracy"]["n"] == 200
    assert "paired on the 200 questions both answered" in (tmp_path / "cmp" / "report.html").read_text()


def test_no_common_doc_id_falls_back_to_unpaired_intervals(tmp_path):
    base = report_run(tmp_path, "base", 1.0)
    model = report_run(tmp_path, "model", 1.0, shift=10_000)
    result, document = compare(tmp_path, base, model)
    assert result.exit_code == 0, result.output
    pairing = document["pairing"]["model"][TASK]
    assert not pairing["paired"] and "no question in common" in pairing["note"]
    accuracy = document["deltas"]["model"][TASK]["accuracy"]
    # the same answers under other doc_ids: the difference is 0 but, unpaired, the interval is not [0, 0]
    assert accuracy["delta"] == 0.0 and accuracy["ci"][0] < 0 < accuracy["ci"][1] and not accuracy["paired"]
    assert "model vs base: no significant difference on 1 task(s) (1 unpaired)" in result.stderr


def test_an_audit_without_per_question_data_still_compares_unpaired(tmp_path):
    base = report_run(tmp_path, "base", 1.0, bootstrap="200")
    old = report_run(tmp_path, "old", 3.0, bootstrap="200")
    (old / QUESTIONS_FILE).unlink()  # as written before issue 12
    document = json.loads((old / "metrics.json").read_text())
    document.pop("questions")
    (old / "metrics.json").write_text(json.dumps(document))
    result, comparison = compare(tmp_path, base, old)
    assert result.exit_code == 0, result.output
    assert comparison["models"]["old"]["questions"] is False
    assert "no per-question data for old" in comparison["pairing"]["old"][TASK]["note"]
    ece = comparison["deltas"]["old"][TASK]["ece"]
    base_metrics, old_metrics = comparison["models"]["base"]["tasks"][TASK], comparison["models"]["old"]["tasks"][TASK]
    assert ece["delta"] == pytest.approx(old_metrics["ece"] - base_metrics["ece"]) and not ece["paired"]
    assert ece["ci"][0] > 0  # even unpaired, a 3x sharpened model is clearly worse


def test_a_questions_file_from_another_audit_is_refused(tmp_path):
    base = report_run(tmp_path, "base", 1.0)
    other = report_run(tmp_path, "other", 1.0, keep=lambda d: d < 100)
    shutil.copy(other / QUESTIONS_FILE, base / QUESTIONS_FILE)
    result, _ = compare(tmp_path, base, other)
    assert result.exit_code == 2
    assert "holds 100 question(s) of task 'shared_task' but metrics.json says 400" in result.stderr
    assert not (tmp_path / "cmp").exists()


@pytest.mark.parametrize("flags, needle", [
    (["--fail-if-worse", "ecee"], "--fail-if-worse: unknown metric 'ecee'. Did you mean 'ece'"),
    (["--fail-if-worse", "ece", "--bootstrap", "0"], "--fail-if-worse needs the intervals"),
    (["--bootstrap", "-1"], "--bootstrap must be an integer between 0 and"),
    (["--seed", "-3"], "--seed must be an integer between 0 and"),
])
def test_bad_gate_flags_are_refused(tmp_path, flags, needle):
    base = report_run(tmp_path, "base", 1.0, keep=lambda d: d < 50)
    result = runner.invoke(app, ["compare", str(base), str(base), "--output", str(tmp_path / "cmp"), *flags])
    assert result.exit_code == 2 and needle in result.stderr
    assert not (tmp_path / "cmp").exists()


@pytest.mark.parametrize("schema", ["first.compare/1", "first.compare/2", "first.distill/1", "first.distill/2"])
def test_a_comparison_given_as_a_run_is_refused_clearly(tmp_path, schema):
    base = report_run(tmp_path, "base", 1.0, keep=lambda d: d < 50)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "metrics.json").write_text(json.dumps({"schema": schema, "tasks": {}}))
    result = runner.invoke(app, ["compare", str(base), str(fake), "--output", str(tmp_path / "cmp")])
    assert result.exit_code == 2 and f"schema is '{schema}', expected 'first.report/1'" in result.stderr
    assert "compare the `first report` folders" in result.stderr
