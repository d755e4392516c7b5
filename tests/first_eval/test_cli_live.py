"""`first report --model ...`: lm-eval run live through the CLI, offline, on the real shared splits."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from first_eval.cli import app
from tiny_models import tiny_llama_dir  # noqa: F401  (session fixture)

runner = CliRunner()


def test_live_report_matches_lm_eval_and_keeps_its_files(shared_datasets, tiny_llama_dir, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    result = runner.invoke(app, [
        "report", "--model", "hf", "--model-args", f"pretrained={tiny_llama_dir}", "--tasks", "arc_easy,piqa",
        "--data-dir", str(shared_datasets), "--limit", "20", "--batch-size", "8", "--device", "cpu",
        "--bootstrap", "50", "--folds", "2", "--output", str(out),
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    (results_file,) = (out / "lm-eval").rglob("results_*.json")
    lm_eval_results = json.loads(results_file.read_text())["results"]
    for task in ("arc_easy", "piqa"):
        assert metrics["tasks"][task]["n"] == 20
        # Our accuracy is lm-eval's acc, to the last digit.
        assert metrics["tasks"][task]["accuracy"] == pytest.approx(lm_eval_results[task]["acc,none"], abs=1e-12)
    # lm-eval's own samples files stay in the run and re-audit to the same numbers.
    again = tmp_path / "again"
    samples = sorted((out / "lm-eval").rglob("samples_*.jsonl"))
    assert len(samples) == 2
    assert runner.invoke(app, ["report", "--samples", *map(str, samples), "--output", str(again), "--bootstrap", "50",
                               "--folds", "2"]).exit_code == 0
    redone = json.loads((again / "metrics.json").read_text())
    for task in ("arc_easy", "piqa"):
        for key in ("accuracy", "ece", "brier", "nll"):
            assert redone["tasks"][task][key] == pytest.approx(metrics["tasks"][task][key], rel=1e-9), (task, key)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tasks", "arc_esay"], r"unknown task 'arc_esay'.*arc_easy"),
        (["--tasks", "arc_easy", "--limit", "0"], r"--limit"),
        (["--tasks", "gsm8k"], r"multiple.choice"),
    ],
)
def test_live_bad_input_is_one_line_exit_2_nothing_written(shared_datasets, tiny_llama_dir, tmp_path, args, message):  # noqa: F811
    out = tmp_path / "out"
    result = runner.invoke(app, ["report", "--model", "hf", "--model-args", f"pretrained={tiny_llama_dir}",
                                 "--output", str(out), *args])
    assert result.exit_code == 2, result.output
    error = result.stderr.strip()
    assert error.startswith("error: ") and "\n" not in error and re.search(message, error), error
    assert not (out / "report.html").exists() and not (out / "metrics.json").exists()


def test_missing_model_folder(tmp_path):
    result = runner.invoke(app, ["report", "--model", "hf", "--model-args", f"pretrained={tmp_path / 'nope'}",
                                 "--tasks", "arc_easy", "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "nope" in result.stderr
    assert not (tmp_path / "o").exists()


def test_missing_data_file_is_named(tiny_llama_dir, tmp_path):  # noqa: F811
    """A real model folder, so the only thing wrong is the data: the error names the split file it looked for."""
    empty = tmp_path / "data"
    (empty / "arc_easy").mkdir(parents=True)
    (empty / "arc_easy" / "validation.jsonl").write_text("{}\n")  # another split is not the one evaluated
    result = runner.invoke(app, ["report", "--model", "hf", "--model-args", f"pretrained={tiny_llama_dir}",
                                 "--tasks", "arc_easy", "--data-dir", str(empty), "--output", str(tmp_path / "o2")])
    assert result.exit_code == 2, result.output
    error = result.stderr.strip()
    assert error.startswith("error: --data-dir ") and "\n" not in error, error
    assert f"{empty / 'arc_easy' / 'test.jsonl'}" in error and "test split" in error and "not found" in error
    assert not (tmp_path / "o2").exists()
