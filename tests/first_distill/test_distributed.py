"""`first distill` under `accelerate launch` with two CPU processes (DDP over gloo): the main process fits T,
extracts and audits, both train, one report comes out with the same teacher rows as a one-process run.
(The students themselves differ from a one-process run: accelerate's distributed sampler draws another order.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from first_demo.build import build_world
from first_demo.config import WorldConfig

pytestmark = pytest.mark.filterwarnings("ignore:the tempered teacher is flat")


def distill_args(world, output: Path, batch_size: int) -> list[str]:
    return ["distill", "--teacher", str(world.teacher_dir), "--student", str(world.student_base_dir),
            "--include-path", str(world.task_dir), "--train-task", "first_demo_boolq", "--eval-tasks",
            "first_demo_boolq", "--variants", "first,ce", "--max-steps", "3", "--batch-size", str(batch_size),
            "--lr", "1e-3", "--bootstrap", "20", "--device", "cpu", "--output", str(output)]


def test_two_process_run_writes_one_report(tmp_path):
    world = build_world(tmp_path / "worlds", seed=0, progress=False, config=WorldConfig.mini())
    # torchrun, not `accelerate launch --cpu`: accelerate's CPU launcher starts ONE process unless under mpirun.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "ACCELERATE_USE_CPU": "true"}
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "first_eval.cli", *distill_args(world, tmp_path / "ddp", 2)],
        capture_output=True, text=True, env=env, timeout=600)
    assert launched.returncode == 0, launched.stderr[-3000:]
    # Two processes really ran: the store records the ranks that wrote it.
    store = json.loads((tmp_path / "ddp" / "knowledge" / "tempered-topk" / "manifest.json").read_text())
    assert store["world_size"] == 2
    document = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert list(document["models"]) == ["teacher", "teacher+ts", "first", "ce"]
    students = document["distill"]["students"]
    assert all(s["steps"] == 3 for s in students.values())
    single = subprocess.run([sys.executable, "-m", "first_eval.cli", *distill_args(world, tmp_path / "one", 4)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    alone = json.loads((tmp_path / "one" / "metrics.json").read_text())
    for name in ("teacher", "teacher+ts"):
        assert document["models"][name]["tasks"] == alone["models"][name]["tasks"]
    assert document["distill"]["teacher_temperature"]["value"] == alone["distill"]["teacher_temperature"]["value"]
    import torch
    from safetensors.torch import load_file

    initial = load_file(Path(world.student_base_dir) / "model.safetensors")
    trained = load_file(tmp_path / "ddp" / "students" / "first" / "model" / "model.safetensors")
    assert any(not torch.equal(initial[name], trained[name]) for name in initial)
