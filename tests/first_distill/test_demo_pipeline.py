"""`first demo` end to end on the mini world: lm-eval audits of every model, one comparison report."""

from __future__ import annotations

import json

import pytest

from first_distill.demo.config import WorldConfig
from first_distill.demo.pipeline import BAYES, DemoRunConfig, ood_counterpart, run_demo


def test_ood_tasks_inherit_the_temperature_of_their_in_domain_task():
    tasks = ("first_demo_boolq", "first_demo_csqa")
    assert ood_counterpart("first_demo_csqa_ood", tasks) == "first_demo_csqa"
    assert ood_counterpart("first_demo_boolq_ood", tasks) == "first_demo_boolq"


def test_demo_on_the_mini_world_writes_one_comparison(tmp_path):
    import torch

    torch.set_num_threads(1)
    report = run_demo(DemoRunConfig(output=tmp_path, n_bootstrap=50, progress=False, world_config=WorldConfig.mini()))
    assert report == tmp_path / "report.html" and report.exists()
    document = json.loads((tmp_path / "metrics.json").read_text())
    assert document["schema"] == "first.compare/1"
    assert set(document["models"]) == {"student-base", "teacher-base", "teacher", "teacher+ts", BAYES}
    tasks = set(document["models"]["teacher"]["tasks"])
    assert len(tasks) == 4 and any(t.endswith("_ood") for t in tasks)
    temperatures = document["demo"]["teacher_temperature"]["values"]
    assert set(temperatures) == {t for t in tasks if not t.endswith("_ood")}
    # teacher+ts is the teacher with its scores divided by the validation temperature: same answers.
    for task in tasks:
        assert document["models"]["teacher+ts"]["tasks"][task]["accuracy"] == pytest.approx(
            document["models"]["teacher"]["tasks"][task]["accuracy"])
    # Each model also gets its own `first report` folder, which `first compare` can reuse.
    for name in document["models"]:
        assert (tmp_path / "audits" / name / "metrics.json").exists()
    assert "Bayes posterior" in report.read_text()
