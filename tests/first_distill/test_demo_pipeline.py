"""`first demo` end to end on the mini world: world -> first distill -> one comparison report."""

from __future__ import annotations

import json

import pytest

from first_demo.config import WorldConfig
from first_demo.pipeline import BAYES, DEMO_VARIANTS, DemoRunConfig, demo_training_settings, run_demo

# The mini world's teacher is nearly flat after tempering: 8-bit codes round many probabilities to 0 (warned).
pytestmark = pytest.mark.filterwarnings("ignore:the tempered teacher is flat")


def test_demo_on_the_mini_world_writes_one_comparison(tmp_path):
    import dataclasses

    import torch

    torch.set_num_threads(1)
    settings = dataclasses.replace(demo_training_settings(), epochs=1)
    config = DemoRunConfig(output=tmp_path, n_bootstrap=50, progress=False, world_config=WorldConfig.mini(),
                           settings=settings)
    report = run_demo(config)
    assert report == tmp_path / "report.html" and report.exists()
    assert report.stat().st_size < 1_000_000  # one self-contained page (it was 2.4 MB before issue 12)
    document = json.loads((tmp_path / "metrics.json").read_text())
    assert document["schema"] == "first.distill/2" and document["baseline"] == "ce"
    assert list(document["models"]) == ["teacher", "teacher+ts", "student-base", "teacher-base", BAYES, *DEMO_VARIANTS]
    tasks = set(document["models"]["teacher"]["tasks"])
    assert len(tasks) == 4 and any(t.endswith("_ood") for t in tasks)
    for task in tasks:  # teacher+ts: the teacher's scores divided by T: same answers
        assert document["models"]["teacher+ts"]["tasks"][task]["accuracy"] == pytest.approx(
            document["models"]["teacher"]["tasks"][task]["accuracy"])
    assert document["demo"]["bayes_reference"] and "Bayes posterior" in report.read_text()
    (run_dir,) = tmp_path.glob("run-seed0-*")
    for name in document["models"]:
        assert (run_dir / "audits" / name / "metrics.json").exists()
    # a rerun reuses the world and the finished run
    before = {p: p.stat().st_mtime_ns for p in run_dir.glob("students/*/model/config.json")}
    run_demo(config)
    assert {p: p.stat().st_mtime_ns for p in run_dir.glob("students/*/model/config.json")} == before
