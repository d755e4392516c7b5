"""Generic pretraining text of the world: short lines whose facts are *sampled* from the truth.

A base model trained on many fresh samples learns ``p[e, a]`` and ``q[e, t]`` themselves (not any
one sample), so it is roughly calibrated: the starting point before fine-tuning makes it
over-confident.

Half the lines are about an attribute, half about a trait. Each picks one of its formats uniformly:

- attribute: "the colour of bavok is red." or any CSQA question template in its lm-eval shape,
  "Question: what is the colour of bavok?\\nAnswer: red" (value drawn from ``p[e, a]``);
- trait: "bavok can swim." / "bavok cannot swim." (verbs), "bavok is tall." / "bavok is not tall."
  (adjectives), or one of the BoolQ templates of the trait's domain, "Question: can bavok swim?
  \\nAnswer: yes" (yes with probability ``q[e, t]``).

So the base models see every template with every fact, in-domain and OOD alike; only the teacher's
fine-tune is narrow.
"""

from __future__ import annotations

import numpy as np

from first_demo.facts import WorldFacts
from first_demo.questions import BOOLQ_CHOICES, QUESTION_TEMPLATES, prompt_text

ATTRIBUTE_STATEMENT = "the {attribute} of {entity} is {value}."
VERB_TRAIT_STATEMENTS = ("{entity} cannot {trait}.", "{entity} can {trait}.")  # indexed by has_trait
ADJECTIVE_TRAIT_STATEMENTS = ("{entity} is not {trait}.", "{entity} is {trait}.")


def _sample_categorical(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row of ``probs`` (n, K) -> (n,) by inverse CDF."""
    cdf = np.cumsum(probs, axis=-1)
    u = rng.random((len(probs), 1)) * cdf[:, -1:]
    return np.minimum((cdf < u).sum(axis=-1), probs.shape[-1] - 1)


def _attribute_line(entity: str, attribute: str, value: str, fmt: int) -> str:
    if fmt == 0:
        return ATTRIBUTE_STATEMENT.format(attribute=attribute, entity=entity, value=value)
    templates = QUESTION_TEMPLATES[("csqa", "in_domain")] + QUESTION_TEMPLATES[("csqa", "ood")]
    question = templates[fmt - 1].format(attribute=attribute, entity=entity)
    return f"{prompt_text(question)} {value}"


def _trait_line(entity: str, trait: str, in_domain: bool, has_trait: bool, fmt: int) -> str:
    if fmt == 0:
        statements = VERB_TRAIT_STATEMENTS if in_domain else ADJECTIVE_TRAIT_STATEMENTS
        return statements[int(has_trait)].format(entity=entity, trait=trait)
    templates = QUESTION_TEMPLATES[("boolq", "in_domain" if in_domain else "ood")]
    question = templates[(fmt - 1) % len(templates)].format(entity=entity, trait=trait)
    return f"{prompt_text(question)} {BOOLQ_CHOICES[int(has_trait)]}"


def make_pretraining_lines(
    facts: WorldFacts, n_lines: int, rng: np.random.Generator, question_share: float = 0.5
) -> list[str]:
    """``n_lines`` generic text lines (no special tokens) drawn from the world's true distributions.

    ``question_share`` of the lines use a question template (uniformly among the applicable ones),
    the rest a plain statement.
    """
    if not 0.0 <= question_share <= 1.0:
        raise ValueError(f"question_share must be in [0, 1]; got {question_share}")
    n_entities, n_attributes, _ = facts.value_probs.shape
    n_traits = facts.trait_probs.shape[1]
    n_attribute_templates = len(QUESTION_TEMPLATES[("csqa", "in_domain")]) + len(QUESTION_TEMPLATES[("csqa", "ood")])
    about_trait = rng.random(n_lines) < 0.5
    entity_idx = rng.integers(n_entities, size=n_lines)
    attribute_idx = rng.integers(n_attributes, size=n_lines)
    trait_idx = rng.integers(n_traits, size=n_lines)
    is_question = rng.random(n_lines) < question_share
    template_draw = rng.random(n_lines)
    observed_value = _sample_categorical(facts.value_probs[entity_idx, attribute_idx], rng)  # (n,)
    has_trait = rng.random(n_lines) < facts.trait_probs[entity_idx, trait_idx]  # (n,)
    lines = []
    for i in range(n_lines):
        entity = facts.entities[entity_idx[i]]
        if about_trait[i]:
            trait = facts.traits[trait_idx[i]]
            in_domain = trait in facts.in_domain_traits
            n_templates = len(QUESTION_TEMPLATES[("boolq", "in_domain" if in_domain else "ood")])
            fmt = 1 + int(template_draw[i] * n_templates) if is_question[i] else 0
            lines.append(_trait_line(entity, trait, in_domain, bool(has_trait[i]), fmt))
        else:
            attribute = facts.attributes[attribute_idx[i]]
            value = facts.values[attribute][observed_value[i]]
            fmt = 1 + int(template_draw[i] * n_attribute_templates) if is_question[i] else 0
            lines.append(_attribute_line(entity, attribute, value, fmt))
    return lines
