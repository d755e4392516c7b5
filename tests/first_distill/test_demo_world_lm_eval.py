"""The demo world's tasks run in lm-eval 0.4 offline, and lm-eval scores choices exactly as the world does."""

from __future__ import annotations

import os

import numpy as np
import pytest

from first_demo.build import build_world
from first_demo.config import WorldConfig
from first_demo.questions import Question
from first_demo.world import DemoWorld


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> DemoWorld:
    hf_home = tmp_path_factory.mktemp("hf_home")
    saved = {k: os.environ.get(k) for k in ("HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    os.environ.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    yield build_world(tmp_path_factory.mktemp("worlds"), seed=0, progress=False, config=WorldConfig.mini())
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_task_manager_indexes_the_world_tasks(world: DemoWorld) -> None:
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(world.task_dir), include_defaults=False)
    assert set(world.tasks) <= set(manager.all_tasks)


def test_simple_evaluate_runs_offline_and_matches_our_choice_scores(world: DemoWorld) -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from first_demo.scoring import choice_loglikelihoods

    manager = TaskManager(include_path=str(world.task_dir), include_defaults=False)
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={world.teacher_dir}",
        tasks=list(world.tasks),
        task_manager=manager,
        limit=20,
        batch_size=16,
        device="cpu",
        log_samples=True,
    )
    model = AutoModelForCausalLM.from_pretrained(str(world.teacher_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(world.teacher_dir))
    for task in world.tasks:
        metrics = results["results"][task]
        assert 0.0 <= metrics["acc,none"] <= 1.0 and "acc_norm,none" in metrics
        samples = sorted(results["samples"][task], key=lambda s: s["doc_id"])
        assert len(samples) == 20
        questions = [Question.from_dict(s["doc"]) for s in samples]
        assert [q.id for q in questions] == [q.id for q in world.questions(task, "test")[:20]]
        lm_eval_scores = np.array([float(resp[0][0]) for s in samples for resp in s["resps"]])
        ours = choice_loglikelihoods(model, tokenizer, questions)
        np.testing.assert_allclose(lm_eval_scores, ours.choice_scores, atol=1e-4)
        accuracy = np.mean(ours.probabilities().correct)
        assert metrics["acc,none"] == pytest.approx(accuracy)
