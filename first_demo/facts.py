"""The demo world's ground truth: made-up entities, their attribute and trait distributions.

Every entity ``e`` has

- for every *attribute* ``a`` (colour, food, ...) a categorical distribution ``p[e, a]`` over that
  attribute's value words, drawn from a symmetric Dirichlet(alpha); CSQA-like questions ask for it;
- for every *trait* ``t`` (can swim, is tall, ...) a probability ``q[e, t]`` of having it, from a
  Rasch (item-response) model ``q[e, t] = sigmoid(ability_e + easiness_t)`` (G. Rasch, 1960,
  "Probabilistic Models for Some Intelligence and Attainment Tests"); BoolQ-like yes/no questions
  ask about it.

Nothing is deterministic ("the colour of bavok is *usually* red"), so every question has a known,
non-degenerate Bayes posterior (see ``questions.py``). Attributes and traits are split into
*in-domain* ones (the teacher is fine-tuned on questions about them) and *out-of-domain* ones
(only seen in generic pretraining text; used by the OOD tasks).

Why this shape: the demo's tiny models must learn the world from sampled text within a CPU budget
of about a minute. Both families are *additive in logit space*: every value word belongs to one
attribute, so ``log p[e, a](v)`` is a table over (entity, value word), and the yes/no log-odds is
``ability_e + easiness_t``. A small transformer learns such tables from a bag of the question's
tokens quickly; an arbitrary (entity, trait) yes/no table would need an MLP to memorise thousands
of noisy interactions ("is the colour of bavok red?" with a per-triple probability, tried first,
was not learnt in budget).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from first_demo.config import WorldConfig

# Short, common single words, so BPE gives each its own token and choice-length effects stay small.
IN_DOMAIN_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "colour": ("red", "blue", "green", "yellow", "black", "white", "brown", "pink"),
    "food": ("rice", "bread", "fish", "soup", "cheese", "fruit", "meat", "beans"),
    "pet": ("cat", "dog", "bird", "horse", "goat", "fox", "mouse", "frog"),
}
OOD_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "drink": ("tea", "milk", "wine", "beer", "juice", "water", "coffee", "cider"),
    "tool": ("hammer", "saw", "knife", "rope", "axe", "brush", "spade", "needle"),
}
IN_DOMAIN_TRAITS: tuple[str, ...] = ("swim", "fly", "sing", "climb", "dance", "cook", "read", "jump", "dig", "paint")
OOD_TRAITS: tuple[str, ...] = ("tall", "old", "loud", "shy", "brave", "rich")  # adjectives

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z")
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("", "k", "l", "n", "r", "x")


@dataclass(frozen=True)
class WorldFacts:
    """Ground truth of one world.

    Attributes:
        entities: (E,) made-up lowercase names, unique.
        attributes: (A,) attribute names, in-domain first; values: per attribute, its K value words.
        traits: (T,) trait words, in-domain first.
        in_domain_attributes, ood_attributes, in_domain_traits, ood_traits: the groups.
        value_probs: (E, A, K) float64, ``value_probs[e, a]`` sums to 1.
        trait_probs: (E, T) float64 in (0, 1), probability that entity e has trait t.
    """

    entities: tuple[str, ...]
    attributes: tuple[str, ...]
    values: dict[str, tuple[str, ...]]
    traits: tuple[str, ...]
    in_domain_attributes: tuple[str, ...]
    ood_attributes: tuple[str, ...]
    in_domain_traits: tuple[str, ...]
    ood_traits: tuple[str, ...]
    value_probs: np.ndarray
    trait_probs: np.ndarray

    def attribute_index(self, attribute: str) -> int:
        if attribute not in self.attributes:
            raise ValueError(f"unknown attribute {attribute!r}; expected one of {', '.join(self.attributes)}")
        return self.attributes.index(attribute)

    def trait_index(self, trait: str) -> int:
        if trait not in self.traits:
            raise ValueError(f"unknown trait {trait!r}; expected one of {', '.join(self.traits)}")
        return self.traits.index(trait)

    def distribution(self, entity_idx: int, attribute: str) -> np.ndarray:
        """(K,) the true value distribution of entity ``entity_idx`` for ``attribute``."""
        return self.value_probs[entity_idx, self.attribute_index(attribute)]

    def trait_probability(self, entity_idx: int, trait: str) -> float:
        """Probability that entity ``entity_idx`` has ``trait``."""
        return float(self.trait_probs[entity_idx, self.trait_index(trait)])

    def to_dict(self) -> dict:
        return {
            "entities": list(self.entities),
            "attributes": list(self.attributes),
            "values": {a: list(v) for a, v in self.values.items()},
            "traits": list(self.traits),
            "in_domain_attributes": list(self.in_domain_attributes),
            "ood_attributes": list(self.ood_attributes),
            "in_domain_traits": list(self.in_domain_traits),
            "ood_traits": list(self.ood_traits),
            "value_probs": self.value_probs.round(6).tolist(),
            "trait_probs": self.trait_probs.round(6).tolist(),
        }


def make_entity_names(n_entities: int, rng: np.random.Generator) -> tuple[str, ...]:
    """``n_entities`` unique pronounceable two-syllable names like ``bavok``, none a world word."""
    taken = {v for vals in (*IN_DOMAIN_ATTRIBUTES.values(), *OOD_ATTRIBUTES.values()) for v in vals}
    taken |= {*IN_DOMAIN_ATTRIBUTES, *OOD_ATTRIBUTES, *IN_DOMAIN_TRAITS, *OOD_TRAITS}
    capacity = (len(_ONSETS) * len(_VOWELS)) ** 2 * len(_CODAS)
    if n_entities > capacity // 4:
        raise ValueError(f"n_entities={n_entities} is too many for the name generator (at most {capacity // 4})")
    names: list[str] = []
    while len(names) < n_entities:
        name = (
            _ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))]
            + _ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))]
            + _CODAS[rng.integers(len(_CODAS))]
        )
        if name not in taken:
            taken.add(name)
            names.append(name)
    return tuple(names)


def sample_world_facts(config: WorldConfig, rng: np.random.Generator) -> WorldFacts:
    """Draw entity names, every ``p[e, a] ~ Dirichlet(alpha 1_K)`` and the Rasch trait probabilities."""
    entities = make_entity_names(config.n_entities, rng)
    values = {a: vals[: config.n_values] for a, vals in {**IN_DOMAIN_ATTRIBUTES, **OOD_ATTRIBUTES}.items()}
    attributes = tuple(values)
    traits = (*IN_DOMAIN_TRAITS, *OOD_TRAITS)
    value_probs = rng.dirichlet(np.full(config.n_values, config.dirichlet_alpha), size=(len(entities), len(attributes)))
    # Keep every value and answer possible (Dirichlet/Beta draws can underflow to exactly 0 or 1).
    value_probs = np.maximum(value_probs, 1e-4)
    value_probs /= value_probs.sum(axis=-1, keepdims=True)
    ability = rng.normal(0.0, config.ability_scale, size=(len(entities), 1))
    easiness = rng.normal(0.0, config.easiness_scale, size=(1, len(traits)))
    trait_probs = np.clip(1.0 / (1.0 + np.exp(-(ability + easiness))), 1e-4, 1 - 1e-4)
    return WorldFacts(
        entities=entities,
        attributes=attributes,
        values=values,
        traits=traits,
        in_domain_attributes=tuple(IN_DOMAIN_ATTRIBUTES),
        ood_attributes=tuple(OOD_ATTRIBUTES),
        in_domain_traits=IN_DOMAIN_TRAITS,
        ood_traits=OOD_TRAITS,
        value_probs=value_probs,
        trait_probs=trait_probs,
    )
