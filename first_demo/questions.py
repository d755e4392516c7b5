"""Multiple-choice questions about the world, each with its exact Bayes posterior.

Two task families, each in-domain and out-of-domain (OOD):

- ``boolq`` (2 choices no/yes, BoolQ-like): "can bavok swim?". The world draws whether this entity
  has the trait this time, so ``P(yes | question) = q[e, t]`` exactly.
- ``csqa`` (``n_csqa_choices`` choices, CommonsenseQA-like): "what is the colour of bavok?". The
  world draws the answer ``v ~ p[e, a]`` and the question writer adds uniformly random distractor
  colours, so ``P(c | question with choices C) = p[e, a](c) / sum_{c' in C} p[e, a](c')``.

Because each gold answer is *sampled* from its posterior, the Bayes predictor (argmax of the
posterior, confidence = its max) is perfectly calibrated in expectation; its measured ECE on a
finite split is small-sample noise only, the floor any model can reach.

The OOD tasks ask about other attributes/traits (``facts.OOD_*``, never in a fine-tuning split)
with other question templates. Questions are distinct across all splits of a task (no question
text + choice set appears twice) but facts are shared: a test question can ask about the same
(entity, trait) or (entity, attribute) as a training question, in other words or with other
choices, and its answer is a fresh draw. A model that memorises its training answers therefore
carries that sampling noise, as over-confidence, into the test split (the FIRST paper's
"tuning-induced mis-calibration").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from first_demo.config import SplitSizes
from first_demo.facts import WorldFacts

SPLITS = ("train", "validation", "test")
BOOLQ_CHOICES = ("no", "yes")

# lm-eval shows the model "Question: {question}\nAnswer:" (see task_files.py / prompt_text).
QUESTION_TEMPLATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("boolq", "in_domain"): ("can {entity} {trait}?", "is {entity} able to {trait}?", "does {entity} know how to {trait}?"),
    ("boolq", "ood"): ("is {entity} {trait}?", "would you call {entity} {trait}?", "do people say {entity} is {trait}?"),
    ("csqa", "in_domain"): ("what is the {attribute} of {entity}?",),
    ("csqa", "ood"): ("which {attribute} does {entity} have?",),
}


def prompt_text(question: str) -> str:
    """The context a model scores the choices after (identical to the task YAML's ``doc_to_text``)."""
    return f"Question: {question}\nAnswer:"


@dataclass(frozen=True)
class TaskSpec:
    """One lm-eval task of the world: its name, family (``boolq``/``csqa``) and domain (``in_domain``/``ood``)."""

    name: str
    family: str
    domain: str

    @property
    def templates(self) -> tuple[str, ...]:
        return QUESTION_TEMPLATES[(self.family, self.domain)]


TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("first_demo_boolq", "boolq", "in_domain"),
    TaskSpec("first_demo_csqa", "csqa", "in_domain"),
    TaskSpec("first_demo_boolq_ood", "boolq", "ood"),
    TaskSpec("first_demo_csqa_ood", "csqa", "ood"),
)


@dataclass(frozen=True)
class Question:
    """One question as written to the task JSONL (``to_dict``).

    Attributes:
        id: ``{task}-{split}-{index}``.
        question: the question sentence (without "Question:"/"Answer:").
        choices: answer words, in the order shown to the model.
        label: index of the sampled gold answer in ``choices``.
        bayes_probs: exact posterior over ``choices`` (sums to 1).
        entity: who is asked about; topic: the attribute (csqa) or trait (boolq) asked about.
    """

    id: str
    question: str
    choices: tuple[str, ...]
    label: int
    bayes_probs: tuple[float, ...]
    entity: str
    topic: str

    def key(self) -> tuple[str, tuple[str, ...]]:
        """Identity used for split disjointness: the question text and the set of choices."""
        return (self.question, tuple(sorted(self.choices)))

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "question": self.question,
            "choices": list(self.choices),
            "label": self.label,
            "bayes_probs": [round(p, 6) for p in self.bayes_probs],
            "entity": self.entity,
            "topic": self.topic,
        }

    @classmethod
    def from_dict(cls, row: dict) -> "Question":
        return cls(
            id=row["id"], question=row["question"], choices=tuple(row["choices"]), label=int(row["label"]),
            bayes_probs=tuple(float(p) for p in row["bayes_probs"]), entity=row["entity"], topic=row["topic"],
        )


def _split_counts(sizes: SplitSizes) -> list[tuple[str, int]]:
    return [("train", sizes.train), ("validation", sizes.validation), ("test", sizes.test)]


def _sample_gold(bayes_probs: np.ndarray, rng: np.random.Generator) -> int:
    return int(rng.choice(len(bayes_probs), p=bayes_probs))


def make_boolq_questions(
    facts: WorldFacts, task: TaskSpec, sizes: SplitSizes, rng: np.random.Generator
) -> dict[str, list[Question]]:
    """BoolQ-like questions: distinct (entity, trait, template) combinations drawn uniformly, split by
    ``sizes``; gold ``yes`` with probability ``q[e, t]``."""
    traits = facts.in_domain_traits if task.domain == "in_domain" else facts.ood_traits
    combos = [(e, t, k) for e in range(len(facts.entities)) for t in traits for k in range(len(task.templates))]
    total = sizes.train + sizes.validation + sizes.test
    if total > len(combos):
        raise ValueError(f"task {task.name} asks for {total} questions but the world has only {len(combos)} distinct "
                         f"(entity, trait, template) combinations; raise n_entities or lower the split sizes")
    picked = rng.permutation(len(combos))[:total]
    by_split: dict[str, list[Question]] = {}
    start = 0
    for split, count in _split_counts(sizes):
        questions = []
        for i, c in enumerate(picked[start : start + count]):
            e, trait, k = combos[c]
            p_yes = facts.trait_probability(e, trait)
            bayes = np.array([1.0 - p_yes, p_yes])
            questions.append(Question(
                id=f"{task.name}-{split}-{i:05d}",
                question=task.templates[k].format(entity=facts.entities[e], trait=trait),
                choices=BOOLQ_CHOICES,
                label=_sample_gold(bayes, rng),
                bayes_probs=tuple(bayes.tolist()),
                entity=facts.entities[e],
                topic=trait,
            ))
        by_split[split] = questions
        start += count
    return by_split


def make_csqa_questions(
    facts: WorldFacts, task: TaskSpec, sizes: SplitSizes, n_choices: int, rng: np.random.Generator
) -> dict[str, list[Question]]:
    """CSQA-like questions, written the way a multiple-choice dataset is: draw a uniformly random
    (entity, attribute, template), draw the answer ``v ~ p[e, a]``, add ``n_choices - 1`` distinct
    distractors uniformly from the attribute's other values, shuffle. Questions are distinct across all
    splits (a repeated (entity, attribute, template, choice set) is redrawn).

    Since the distractors are uniform given the answer, ``P(answer = c | choices C) ∝ p[e, a](c)``
    on ``C``: the Bayes posterior is ``p[e, a]`` restricted to the choices and renormalised, and the
    gold answers' marginal distribution is ``p[e, a]`` itself (so training on them is unbiased).
    """
    attributes = facts.in_domain_attributes if task.domain == "in_domain" else facts.ood_attributes
    n_values = len(facts.values[attributes[0]])
    total = sizes.train + sizes.validation + sizes.test
    capacity = len(facts.entities) * len(attributes) * len(task.templates) * math.comb(n_values, n_choices)
    if total > capacity // 2:
        raise ValueError(f"task {task.name} asks for {total} questions but the world has only {capacity} distinct "
                         f"ones (at most half can be drawn); raise n_entities or lower the split sizes")
    seen: set[tuple] = set()
    drawn: list[tuple[int, str, int, np.ndarray, int]] = []
    while len(drawn) < total:
        e = int(rng.integers(len(facts.entities)))
        attribute = attributes[int(rng.integers(len(attributes)))]
        k = int(rng.integers(len(task.templates)))
        answer = int(rng.choice(n_values, p=facts.distribution(e, attribute)))
        others = np.delete(np.arange(n_values), answer)
        shown = rng.permutation(np.concatenate([[answer], rng.choice(others, size=n_choices - 1, replace=False)]))
        key = (e, attribute, k, tuple(sorted(shown.tolist())))
        if key not in seen:  # acceptance depends on the choice set only, so P(answer | choices) is unchanged
            seen.add(key)
            drawn.append((e, attribute, k, shown, int(np.flatnonzero(shown == answer)[0])))
    by_split: dict[str, list[Question]] = {}
    start = 0
    for split, count in _split_counts(sizes):
        questions = []
        for i, (e, attribute, k, shown, label) in enumerate(drawn[start : start + count]):
            restricted = facts.distribution(e, attribute)[shown]
            questions.append(Question(
                id=f"{task.name}-{split}-{i:05d}",
                question=task.templates[k].format(attribute=attribute, entity=facts.entities[e]),
                choices=tuple(facts.values[attribute][j] for j in shown),
                label=label,
                bayes_probs=tuple((restricted / restricted.sum()).tolist()),
                entity=facts.entities[e],
                topic=attribute,
            ))
        by_split[split] = questions
        start += count
    return by_split


def make_task_questions(
    facts: WorldFacts, task: TaskSpec, sizes: SplitSizes, n_csqa_choices: int, rng: np.random.Generator
) -> dict[str, list[Question]]:
    """All splits of ``task`` (``{"train": [...], "validation": [...], "test": [...]}``)."""
    if task.family == "boolq":
        return make_boolq_questions(facts, task, sizes, rng)
    if task.family == "csqa":
        return make_csqa_questions(facts, task, sizes, n_csqa_choices, rng)
    raise ValueError(f"unknown task family {task.family!r}; expected 'boolq' or 'csqa'")
