"""End-to-end `first report --samples` through the real console entry point (in-process)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from first_eval.cli import app
from first_demo.synthetic import SyntheticTask, write_samples_file

runner = CliRunner()
OVERCONFIDENT = SyntheticTask("synth_overconfident", 1500, (4,), sharpness=3.0)
ALL_RIGHT = SyntheticTask("synth_all_right", 40, (2,), sharpness=1.0, logit_scale=0.0)


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture()
def overconfident_file(tmp_path: Path) -> Path:
    return write_samples_file(OVERCONFIDENT, tmp_path / "in", seed=1)


def test_report_writes_html_metrics_and_calibrators(tmp_path, overconfident_file):
    out = tmp_path / "out"
    result = invoke("report", "--samples", str(overconfident_file), "--output", str(out), "--bootstrap", "200")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["calibrators.json", "metrics.json", "questions.jsonl.gz", "report.html"]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["schema"] == "first.report/1"
    task = metrics["tasks"]["synth_overconfident"]
    for key in ("n", "accuracy", "ece", "ece_ci", "ece_equal_mass", "mce", "rmsce", "brier", "nll", "auroc", "calibrated"):
        assert key in task, key
    assert task["n"] == 1500
    lo, hi = task["ece_ci"]
    assert lo <= task["ece"] <= hi
    for name in ("temperature", "platt", "isotonic"):
        assert {"ece", "accuracy", "nll", "brier"} <= set(task["calibrated"][name]), name
    # The planted sharpness is 3: temperature scaling must find about 3 and remove most of the ECE.
    assert task["calibrated"]["temperature"]["temperature"] == pytest.approx(3.0, rel=0.15)
    assert task["calibrated"]["temperature"]["ece"] < task["ece"] / 2
    # Temperature never changes the chosen answer.
    assert task["calibrated"]["temperature"]["accuracy"] == task["accuracy"]

    calibrators = json.loads((out / "calibrators.json").read_text())
    assert calibrators["tasks"]["synth_overconfident"]["temperature"]["temperature"] == task["calibrated"]["temperature"]["temperature"]

    html = (out / "report.html").read_text()
    assert "<svg" in html and "synth_overconfident" in html
    assert not re.search(r"<(script|link)[^>]+(src|href)=\"?https?:", html), "report must be self-contained"


def test_accuracy_equals_lm_eval_recorded_acc_and_acc_norm(tmp_path):
    task = SyntheticTask("synth_len", 400, (3, 4), sharpness=1.0, length_penalty=0.3)
    path = write_samples_file(task, tmp_path, seed=5)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for mode, key in (("sum", "acc"), ("char-norm", "acc_norm")):
        out = tmp_path / mode
        assert invoke("report", "--samples", str(path), "--output", str(out), "--score", mode, "--bootstrap", "0").exit_code == 0
        accuracy = json.loads((out / "metrics.json").read_text())["tasks"]["synth_len"]["accuracy"]
        assert accuracy == pytest.approx(np.mean([r[key] for r in records]), abs=1e-12)


def test_score_mode_effect_is_visible(tmp_path):
    task = SyntheticTask("synth_len", 400, (4,), sharpness=1.0, length_penalty=0.3)
    path = write_samples_file(task, tmp_path, seed=5)
    out = tmp_path / "out"
    assert invoke("report", "--samples", str(path), "--output", str(out), "--bootstrap", "0").exit_code == 0
    modes = json.loads((out / "metrics.json").read_text())["tasks"]["synth_len"]["score_modes"]
    assert set(modes) == {"sum", "char-norm"}
    assert "Score mode matters" in (out / "report.html").read_text()


def test_degenerate_all_correct_task_still_reports_and_explains_platt(tmp_path):
    # logit_scale 0 with sharpness 1 gives ties; build an all-correct file by hand instead.
    lines = [json.dumps({"doc_id": i, "target": "0", "filtered_resps": [["-0.1", "False"], [str(-1.0 - i % 3), "False"]],
                         "arguments": {"gen_args_0": {"arg_0": "Q", "arg_1": " yes"}, "gen_args_1": {"arg_0": "Q", "arg_1": " no"}},
                         "acc": 1.0}) for i in range(30)]
    path = tmp_path / "samples_all_right_2026-01-01T00-00-00.000000.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    result = invoke("report", "--samples", str(path), "--output", str(out), "--bootstrap", "50")
    assert result.exit_code == 0, result.output
    task = json.loads((out / "metrics.json").read_text())["tasks"]["all_right"]
    assert task["accuracy"] == 1.0
    assert task["auroc"] is None
    assert "error" in task["calibrated"]["platt"]
    assert "could not be fit" in (out / "report.html").read_text()


def test_folder_argument_expands_to_its_samples_files(tmp_path, overconfident_file):
    out = tmp_path / "out"
    assert invoke("report", "--samples", str(overconfident_file.parent), "--output", str(out), "--bootstrap", "0").exit_code == 0
    assert "synth_overconfident" in json.loads((out / "metrics.json").read_text())["tasks"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--samples", "/nonexistent/samples_x.jsonl"], "no such file"),
        (["--folds", "5000"], "has 1500 question\\(s\\) but --folds is 5000"),
        (["--score", "bytes"], "--score must be one of"),
        (["--calibrators", "temperature,magic"], "unknown calibrator 'magic'"),
        (["--bins", "0"], "--bins must be >= 1"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, overconfident_file, extra, message):
    out = tmp_path / "out"
    args = ["report", "--output", str(out), "--bootstrap", "0"]
    if "--samples" not in extra:
        args += ["--samples", str(overconfident_file)]
    result = runner.invoke(app, args + extra)
    assert result.exit_code == 2
    error = result.stderr.strip()
    assert error.startswith("error: ") and "\n" not in error and re.search(message, error), error
    assert not out.exists() or not any(out.iterdir())


def test_console_script_errors_have_no_traceback(tmp_path):
    empty = tmp_path / "samples_empty_2026-01-01T00-00-00.000000.jsonl"
    empty.write_text("")
    completed = subprocess.run([sys.executable, "-m", "first_eval.cli", "report", "--samples", str(empty), "--output", str(tmp_path / "o")],
                               capture_output=True, text=True)
    assert completed.returncode == 2
    assert completed.stderr.strip() == f"error: {empty}: the file is empty"
    assert not (tmp_path / "o").exists()
