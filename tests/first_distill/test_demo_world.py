"""The demo world: gold answers follow the stated Bayes posterior, splits are disjoint, the cache is reused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from first_demo import WorldConfig, build_world, find_complete_world


@pytest.fixture(scope="module")
def mini_world(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    return build_world(tmp_path_factory.mktemp("worlds"), seed=3, progress=False, config=WorldConfig.mini())


def test_gold_answers_are_distributed_as_the_bayes_posterior_says(mini_world):
    # Summed over many questions, the expected number of gold answers at each position equals the
    # observed one (a calibration check of the generator itself, against its own exact posterior).
    for task in mini_world.tasks:
        questions = [q for split in ("train", "validation", "test") for q in mini_world.questions(task, split)]
        expected = np.array([max(q.bayes_probs) for q in questions]).sum()
        observed = sum(int(np.argmax(q.bayes_probs) == q.label) for q in questions)
        sd = np.sqrt(sum(p * (1 - p) for p in (max(q.bayes_probs) for q in questions)))
        assert abs(observed - expected) < 4 * sd + 1, (task, observed, expected)
        for q in questions:
            assert 0 <= q.label < len(q.choices) and abs(sum(q.bayes_probs) - 1) < 1e-5


def test_splits_are_disjoint_and_yamls_point_at_existing_files(mini_world):
    for task in mini_world.tasks:
        keys = {split: {q.key() for q in mini_world.questions(task, split)} for split in ("train", "validation", "test")}
        assert not keys["train"] & keys["test"] and not keys["validation"] & keys["test"] and not keys["train"] & keys["validation"]
        assert (mini_world.task_dir / f"{task}.yaml").exists()
        for path in mini_world.split_files[task].values():
            assert path.exists()


def test_models_reload_and_tokenizer_round_trips(mini_world):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(mini_world.teacher_dir)
    text = "Question: can zusi swim?\nAnswer: yes"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    for folder in (mini_world.student_base_dir, mini_world.teacher_base_dir, mini_world.teacher_dir):
        assert AutoModelForCausalLM.from_pretrained(folder).config.vocab_size >= len(tokenizer)


def test_a_complete_world_is_reused_and_a_partial_one_is_not(mini_world, tmp_path):
    root = mini_world.root.parent
    again = build_world(root, seed=3, progress=False, config=WorldConfig.mini())
    assert again.root == mini_world.root and again.teacher_dir == mini_world.teacher_dir
    # A leftover partial build of another seed (a killed build) is never taken for a world.
    (root / ".world-mini-seed4.partial-999999-dead").mkdir()
    assert find_complete_world(root, seed=4, config=WorldConfig.mini()) is None
    assert json.loads((mini_world.root / "bayes.json").read_text()).keys() == set(mini_world.tasks)
