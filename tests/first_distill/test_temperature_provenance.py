"""Issue 11's provenance bug: `first distill` fits T (`auto`), and the store it writes must say `auto` too,
with the fit's evidence, not `fixed` (the value was once turned back into a plain option and parsed again)."""

from __future__ import annotations

import json

from first_demo.build import build_world
from first_demo.config import WorldConfig
from first_distill.pipeline import DistillConfig, run_distill
from first_distill.trainer import TrainerSettings


def test_auto_temperature_reaches_the_store_manifest(tmp_path):
    world = build_world(tmp_path / "worlds", seed=0, progress=False, config=WorldConfig.mini())
    result = run_distill(DistillConfig(
        teacher=world.teacher_dir, student=world.student_base_dir, output=tmp_path / "run",
        eval_tasks=("first_demo_boolq",), train_tasks=("first_demo_boolq",), include_path=world.task_dir,
        variants=("first", "topk-notemp"), settings=TrainerSettings(max_steps=1, batch_size=4), n_bootstrap=10,
        device="cpu", progress=False))
    fitted = json.loads((tmp_path / "run" / "teacher_temperature.json").read_text())
    assert fitted["source"] == "auto" and result.teacher_temperature.source == "auto"
    store = json.loads((tmp_path / "run" / "knowledge" / "tempered-topk" / "manifest.json").read_text())
    text = json.dumps(store)
    assert store["temperature"] == fitted["value"]
    assert '"source": "auto"' in text and '"ece_before": ' + json.dumps(fitted["ece_before"]) in text
    assert "fixed" not in json.dumps(store.get("temperature_source"))
    untempered = json.loads((tmp_path / "run" / "knowledge" / "untempered-topk" / "manifest.json").read_text())
    assert untempered["temperature"] == 1.0 and "none" in json.dumps(untempered.get("temperature_source"))
