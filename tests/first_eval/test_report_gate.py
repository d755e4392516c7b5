"""`first report --max-ece / --min-accuracy / --gate-on`: a release gate that still writes the report (issue 12)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from first_eval.cli import app
from first_eval.gate import ReportGate, report_gate_lines
from first_demo.synthetic import SyntheticTask, write_samples_file

runner = CliRunner()


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gate")
    return [write_samples_file(SyntheticTask(name, 300, (4,), sharpness=sharpness), folder, seed=3)
            for name, sharpness in (("calibrated", 1.0), ("sharp", 3.0))]


def report(tmp_path, samples, *flags, bootstrap="200"):
    output = tmp_path / "out"
    result = runner.invoke(app, ["report", "--samples", *map(str, samples), "--output", str(output),
                                 "--bootstrap", bootstrap, *flags])
    document = json.loads((output / "metrics.json").read_text()) if (output / "metrics.json").exists() else None
    return result, document


def test_a_task_above_max_ece_exits_1_with_one_line_and_the_report_written(tmp_path, samples):
    result, document = report(tmp_path, samples, "--max-ece", "0.15")
    assert result.exit_code == 1
    failed = [line for line in result.stderr.splitlines() if line.startswith("gate failed")]
    sharp_ece = document["tasks"]["sharp"]["ece"]
    assert failed == [f"gate failed: sharp: ECE {sharp_ece:.4f} > 0.15 (--max-ece)"]
    assert document["tasks"]["calibrated"]["ece"] <= 0.15 < sharp_ece
    assert document["gate"] == {"max_ece": 0.15, "min_accuracy": None, "on": "point", "passed": False,
                                "failures": [{"task": "sharp", "metric": "ece", "value": sharp_ece, "threshold": 0.15}]}
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Release gate: failed" in html and (tmp_path / "out" / "questions.jsonl.gz").exists()


def test_a_passing_gate_exits_0_and_is_recorded(tmp_path, samples):
    result, document = report(tmp_path, samples, "--max-ece", "0.9", "--min-accuracy", "0.1")
    assert result.exit_code == 0, result.output
    assert document["gate"]["passed"] and document["gate"]["failures"] == []
    assert "Release gate: passed" in (tmp_path / "out" / "report.html").read_text()


def test_gate_on_upper_uses_the_pessimistic_end_of_each_interval(tmp_path, samples):
    _, plain = report(tmp_path / "plain", samples)
    calibrated = plain["tasks"]["calibrated"]
    threshold = round((calibrated["ece"] + calibrated["ece_ci"][1]) / 2, 4)  # above the point, below the upper bound
    accuracy = round((calibrated["accuracy"] + calibrated["accuracy_ci"][0]) / 2, 4)  # below the point, above the lower
    result, document = report(tmp_path / "point", samples, "--max-ece", str(threshold), "--min-accuracy", str(accuracy))
    assert not any(f["task"] == "calibrated" for f in document["gate"]["failures"])
    result, document = report(tmp_path / "upper", samples, "--max-ece", str(threshold), "--min-accuracy", str(accuracy),
                              "--gate-on", "upper")
    assert result.exit_code == 1
    failures = {(f["task"], f["metric"]): f["value"] for f in document["gate"]["failures"]}
    assert failures[("calibrated", "ece")] == calibrated["ece_ci"][1]
    assert failures[("calibrated", "accuracy")] == calibrated["accuracy_ci"][0]
    line = next(l for l in result.stderr.splitlines() if l.startswith("gate failed: calibrated"))
    assert "ECE upper CI bound" in line and "accuracy lower CI bound" in line and "; " in line  # one line per task


@pytest.mark.parametrize("flags, needle", [
    (["--max-ece", "1.5"], "--max-ece must be between 0 and 1; got 1.5"),
    (["--max-ece", "-0.1"], "--max-ece must be between 0 and 1; got -0.1"),
    (["--min-accuracy", "2"], "--min-accuracy must be between 0 and 1; got 2.0"),
    (["--max-ece", "0.1", "--gate-on", "upperr"], "--gate-on must be one of point, upper; got 'upperr'"),
    (["--max-ece", "0.1", "--gate-on", "upper", "--bootstrap", "0"], "--gate-on upper checks the bootstrap intervals"),
])
def test_bad_thresholds_exit_2_and_write_nothing(tmp_path, samples, flags, needle):
    result = runner.invoke(app, ["report", "--samples", str(samples[0]), "--output", str(tmp_path / "out"), *flags])
    assert result.exit_code == 2 and needle in result.stderr
    assert not (tmp_path / "out").exists()


def test_gate_without_intervals_cannot_pass_on_upper():
    gate = ReportGate(max_ece=0.2, on="upper").check({"t": {"ece": 0.01, "ece_ci": [None, None]}})
    assert not gate["passed"]
    assert "no bootstrap interval" in report_gate_lines(gate)[0]
    assert ReportGate().active is False
