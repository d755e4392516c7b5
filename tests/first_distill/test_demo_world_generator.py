"""The demo world's data generator: gold answers follow the stated Bayes posterior, splits are disjoint."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import fields, is_dataclass

import numpy as np
import pytest
from scipy import stats

from first_demo.config import ModelSize, SplitSizes, WorldConfig
from first_demo.corpus import make_pretraining_lines
from first_demo.facts import sample_world_facts
from first_demo.questions import SPLITS, TASKS, TaskSpec, make_task_questions

CONFIG = WorldConfig()


def _all_questions(config: WorldConfig, seed: int) -> dict:
    facts = sample_world_facts(config, np.random.default_rng([seed, 0]))
    rng = np.random.default_rng([seed, 1])
    return facts, {
        task.name: make_task_questions(facts, task, config.split_sizes(task.family, task.domain), config.n_csqa_choices, rng)
        for task in TASKS
    }


def _binned_chi_square(predicted: np.ndarray, observed: np.ndarray, n_bins: int = 8) -> float:
    """p-value of 'observed 0/1 outcomes are Bernoulli(predicted)' pooled in probability bins."""
    edges = np.quantile(predicted, np.linspace(0, 1, n_bins + 1))
    bins = np.clip(np.searchsorted(edges[1:-1], predicted, side="right"), 0, n_bins - 1)
    expected = np.bincount(bins, weights=predicted, minlength=n_bins)
    counts = np.bincount(bins, minlength=n_bins).astype(float)
    hits = np.bincount(bins, weights=observed, minlength=n_bins)
    variance = np.bincount(bins, weights=predicted * (1 - predicted), minlength=n_bins)
    keep = counts > 0
    statistic = float((((hits - expected)[keep]) ** 2 / variance[keep]).sum())
    return float(stats.chi2.sf(statistic, df=int(keep.sum())))


@pytest.mark.parametrize("family", ["boolq", "csqa"])
def test_gold_answers_follow_the_bayes_posterior(family: str) -> None:
    # Pool every (question, choice) over several seeds: P(choice is gold) must equal its Bayes probability.
    predicted, observed = [], []
    for seed in range(6):
        _, questions = _all_questions(CONFIG, seed)
        for task in TASKS:
            if task.family != family:
                continue
            for split in SPLITS:
                for q in questions[task.name][split]:
                    predicted.extend(q.bayes_probs)
                    observed.extend(int(i == q.label) for i in range(len(q.choices)))
    predicted_arr, observed_arr = np.array(predicted), np.array(observed, dtype=float)
    assert abs(observed_arr.sum() - predicted_arr.sum()) < 4 * np.sqrt((predicted_arr * (1 - predicted_arr)).sum())
    assert _binned_chi_square(predicted_arr, observed_arr) > 1e-3


def test_csqa_posterior_formula_matches_brute_force_simulation() -> None:
    # Oracle for the derivation P(answer = c | choices C) ∝ p(c) on C: simulate "answer ~ p, then
    # uniform distinct distractors" and condition on one particular choice set by rejection.
    rng = np.random.default_rng(0)
    p = np.array([0.5, 0.25, 0.15, 0.07, 0.03])
    target = {0, 2, 3}
    n = 400_000
    answers = rng.choice(len(p), size=n, p=p)
    keys = rng.random((n, len(p)))
    keys[np.arange(n), answers] = -1.0  # the answer always makes it into the set
    chosen = np.argsort(keys, axis=1)[:, :3]
    accepted = np.array([set(row) == target for row in chosen.tolist()])
    frequencies = np.bincount(answers[accepted], minlength=len(p))[sorted(target)] / accepted.sum()
    formula = p[sorted(target)] / p[sorted(target)].sum()
    np.testing.assert_allclose(frequencies, formula, atol=0.01)


def test_bayes_probs_are_distributions_and_labels_in_range() -> None:
    _, questions = _all_questions(CONFIG, 0)
    for task in TASKS:
        for split in SPLITS:
            for q in questions[task.name][split]:
                assert len(q.bayes_probs) == len(q.choices) >= 2
                assert abs(sum(q.bayes_probs) - 1.0) < 1e-9
                assert 0 <= q.label < len(q.choices)
                assert len(set(q.choices)) == len(q.choices)
                assert all(c.isalpha() and " " not in c for c in q.choices)  # short single words


def test_split_sizes_and_disjoint_splits() -> None:
    _, questions = _all_questions(CONFIG, 0)
    for task in TASKS:
        sizes = CONFIG.split_sizes(task.family, task.domain)
        assert [len(questions[task.name][s]) for s in SPLITS] == [sizes.train, sizes.validation, sizes.test]
        keys = [q.key() for s in SPLITS for q in questions[task.name][s]]
        assert len(keys) == len(set(keys)), f"{task.name}: a question appears twice"
        ids = [q.id for s in SPLITS for q in questions[task.name][s]]
        assert len(ids) == len(set(ids))


def test_ood_tasks_ask_about_other_topics_with_other_templates() -> None:
    facts, questions = _all_questions(CONFIG, 0)
    in_topics = {q.topic for t in TASKS if t.domain == "in_domain" for s in SPLITS for q in questions[t.name][s]}
    ood_topics = {q.topic for t in TASKS if t.domain == "ood" for s in SPLITS for q in questions[t.name][s]}
    assert in_topics <= set(facts.in_domain_attributes) | set(facts.in_domain_traits)
    assert ood_topics <= set(facts.ood_attributes) | set(facts.ood_traits)
    assert not in_topics & ood_topics
    for family in ("boolq", "csqa"):
        in_templates = {t.templates for t in TASKS if t.family == family and t.domain == "in_domain"}
        ood_templates = {t.templates for t in TASKS if t.family == family and t.domain == "ood"}
        assert not set().union(*in_templates) & set().union(*ood_templates)


def test_generation_is_deterministic_given_the_seed() -> None:
    _, first = _all_questions(CONFIG, 3)
    _, again = _all_questions(CONFIG, 3)
    _, other = _all_questions(CONFIG, 4)
    dump = lambda qs: [q.to_dict() for t in TASKS for s in SPLITS for q in qs[t.name][s]]  # noqa: E731
    assert dump(first) == dump(again)
    assert dump(first) != dump(other)


def test_entity_names_are_unique_and_not_world_words() -> None:
    facts = sample_world_facts(CONFIG, np.random.default_rng(0))
    assert len(set(facts.entities)) == len(facts.entities) == CONFIG.n_entities
    words = {v for vals in facts.values.values() for v in vals} | set(facts.traits) | set(facts.attributes)
    assert not set(facts.entities) & words
    np.testing.assert_allclose(facts.value_probs.sum(axis=-1), 1.0)
    assert ((facts.trait_probs > 0) & (facts.trait_probs < 1)).all()


def test_pretraining_statements_follow_the_true_distribution() -> None:
    facts = sample_world_facts(CONFIG, np.random.default_rng(0))
    lines = make_pretraining_lines(facts, 40_000, np.random.default_rng(1), question_share=0.0)
    entity, attribute = facts.entities[0], "colour"
    prefix = f"the {attribute} of {entity} is "
    counts = Counter(line[len(prefix):-1] for line in lines if line.startswith(prefix))
    observed = np.array([counts.get(v, 0) for v in facts.values[attribute]], dtype=float)
    expected = facts.distribution(0, attribute) * observed.sum()
    keep = expected > 5
    statistic = float((((observed - expected)[keep]) ** 2 / expected[keep]).sum())
    assert observed.sum() > 100
    assert stats.chi2.sf(statistic, df=max(1, int(keep.sum()) - 1)) > 1e-3
    assert observed[~keep].sum() <= 5 + 3 * np.sqrt(max(expected[~keep].sum(), 1.0))


def test_too_many_questions_for_the_world_is_a_value_error() -> None:
    facts = sample_world_facts(WorldConfig.mini(), np.random.default_rng(0))
    with pytest.raises(ValueError, match="distinct"):
        make_task_questions(facts, TaskSpec("x", "boolq", "in_domain"), SplitSizes(10_000, 1, 1), 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="distinct"):
        make_task_questions(facts, TaskSpec("x", "csqa", "in_domain"), SplitSizes(10_000, 1, 1), 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="family"):
        make_task_questions(facts, TaskSpec("x", "piqa", "in_domain"), SplitSizes(1, 1, 1), 4, np.random.default_rng(0))


def _canonical_sha256(document: dict) -> str:
    """The documented recipe hash, computed here: sha256 of the sorted, compact JSON, first 16 hex digits."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_config_hash_is_the_sha256_of_every_field() -> None:
    default = WorldConfig()
    document = {f.name: getattr(default, f.name) for f in fields(WorldConfig)}
    document = {k: ({g.name: getattr(v, g.name) for g in fields(v)} if is_dataclass(v) else v) for k, v in document.items()}
    assert default.config_hash() == _canonical_sha256(document)
    assert WorldConfig.mini().config_hash() != default.config_hash()
    # equal recipes built two ways hash alike; changing any field, nested ones included, changes the hash
    assert default.with_changes(n_entities=5).with_changes(n_entities=24).config_hash() == default.config_hash()
    changed = {"name": "other", "dirichlet_alpha": 0.3, "pretrain_lines": 79_999, "finetune_lr": 2.5e-3,
               "student_base": ModelSize(hidden_size=96, n_layers=2),
               "boolq_sizes": SplitSizes(train=200, validation=201, test=320)}
    hashes = {default.with_changes(**{key: value}).config_hash() for key, value in changed.items()}
    assert len(hashes) == len(changed) and default.config_hash() not in hashes


def test_config_hash_is_the_same_in_another_process() -> None:
    """No per-process state (Python's salted str hash, object ids) leaks in: a cached world is found again."""
    code = "from first_demo.config import WorldConfig; print(WorldConfig().config_hash())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert other.stdout.strip() == WorldConfig().config_hash()


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="n_values"):
        WorldConfig(n_values=9)
    with pytest.raises(ValueError, match="n_csqa_choices"):
        WorldConfig(n_values=4, n_csqa_choices=5)
    with pytest.raises(ValueError, match="dirichlet_alpha"):
        WorldConfig(dirichlet_alpha=0.0)


def test_the_teacher_base_is_the_stronger_model_of_the_default_recipe() -> None:
    # The FIRST paper's setting: the teacher is the stronger model and the students learn the task by training.
    # The teacher base is the larger model and reads the whole pretraining corpus; the student base reads only
    # part of it (it learns the question format and the answer words, not the world's facts).
    student_lines = CONFIG.student_steps * CONFIG.pretrain_batch
    teacher_lines = CONFIG.teacher_base_steps * CONFIG.pretrain_batch
    assert student_lines < CONFIG.pretrain_lines <= teacher_lines
    assert CONFIG.student_base.hidden_size < CONFIG.teacher_base.hidden_size
    assert CONFIG.student_base.n_layers <= CONFIG.teacher_base.n_layers
