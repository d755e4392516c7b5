"""The knobs of the demo world: world size, split sizes, model sizes and training steps.

One frozen dataclass so that a world folder can record exactly what built it (``config_hash``)
and a cached world is reused only when the recipe is the same.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class ModelSize:
    """Shape of one tiny ``LlamaForCausalLM`` (see ``models.py``)."""

    hidden_size: int
    n_layers: int
    n_heads: int = 4
    intermediate_size: int = 0  # 0 -> 3 * hidden_size

    def __post_init__(self) -> None:
        if self.hidden_size % self.n_heads != 0:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by n_heads {self.n_heads}")


@dataclass(frozen=True)
class SplitSizes:
    """Number of questions in each split of one task."""

    train: int
    validation: int
    test: int


@dataclass(frozen=True)
class WorldConfig:
    """Everything that decides a demo world, except the seed.

    Attributes:
        name: ``"default"`` builds into ``world-seed{seed}``; any other name into ``world-{name}-seed{seed}``.
        n_entities: number of made-up entities (each has one value distribution per attribute).
        n_values: values per attribute actually used (at most 8, the size of each vocabulary).
        dirichlet_alpha: concentration of the symmetric Dirichlet each entity's attribute distribution
            is drawn from; smaller -> peakier posteriors -> higher Bayes accuracy.
        ability_scale, easiness_scale: trait probabilities follow a Rasch model,
            ``q[e, t] = sigmoid(ability_e + easiness_t)`` with ``ability_e ~ N(0, ability_scale^2)`` and
            ``easiness_t ~ N(0, easiness_scale^2)``.
        n_csqa_choices: choices shown in a CSQA-like question.
        boolq_sizes, csqa_sizes: in-domain split sizes; ood_boolq_sizes, ood_csqa_sizes: out-of-domain.
        pretrain_lines: size of the generic-text corpus both base models are pretrained on.
        pretrain_question_share: fraction of corpus lines written as question + answer (the rest are
            plain statements).
        vocab_size: BPE vocabulary size (byte-level; includes the 256 byte symbols and 3 specials).
        student_base, teacher_base: model shapes.
        student_steps, teacher_base_steps: pretraining optimiser steps; pretrain_batch, pretrain_lr. As in the
            FIRST paper the teacher is the stronger model: the teacher base reads the whole corpus
            (``teacher_base_steps * pretrain_batch >= pretrain_lines``) and learns the world's facts, while the
            student base reads a small random share of it, enough for the question format and the answer words
            but not the facts, so the students learn the task from their training.
        finetune_epochs, finetune_batch, finetune_lr: the teacher's fine-tune on the in-domain train splits.
    """

    name: str = "default"
    n_entities: int = 24
    n_values: int = 8
    dirichlet_alpha: float = 0.15
    ability_scale: float = 2.5
    easiness_scale: float = 1.0
    n_csqa_choices: int = 4
    boolq_sizes: SplitSizes = field(default_factory=lambda: SplitSizes(train=200, validation=200, test=320))
    csqa_sizes: SplitSizes = field(default_factory=lambda: SplitSizes(train=300, validation=200, test=400))
    ood_boolq_sizes: SplitSizes = field(default_factory=lambda: SplitSizes(train=32, validation=100, test=300))
    ood_csqa_sizes: SplitSizes = field(default_factory=lambda: SplitSizes(train=32, validation=100, test=300))
    pretrain_lines: int = 80_000
    pretrain_question_share: float = 0.5
    vocab_size: int = 640
    student_base: ModelSize = field(default_factory=lambda: ModelSize(hidden_size=96, n_layers=1))
    teacher_base: ModelSize = field(default_factory=lambda: ModelSize(hidden_size=128, n_layers=1))
    student_steps: int = 100  # 6,400 lines, 8% of the corpus (1200 made it as good as the teacher base)
    teacher_base_steps: int = 1500
    pretrain_batch: int = 64
    pretrain_lr: float = 3e-3
    finetune_epochs: int = 16
    finetune_batch: int = 32
    finetune_lr: float = 2e-3

    def __post_init__(self) -> None:
        if not 2 <= self.n_values <= 8:
            raise ValueError(f"n_values must be in 2..8; got {self.n_values}")
        if not 2 <= self.n_csqa_choices <= self.n_values:
            raise ValueError(f"n_csqa_choices must be in 2..n_values={self.n_values}; got {self.n_csqa_choices}")
        if self.n_entities < 2:
            raise ValueError(f"n_entities must be >= 2; got {self.n_entities}")
        if not self.dirichlet_alpha > 0:
            raise ValueError(f"dirichlet_alpha must be > 0; got {self.dirichlet_alpha}")
        if self.ability_scale < 0 or self.easiness_scale < 0:
            raise ValueError(f"ability_scale and easiness_scale must be >= 0; got {self.ability_scale}, {self.easiness_scale}")

    @classmethod
    def mini(cls) -> "WorldConfig":
        """A world that builds in a few seconds, for tests: few entities, tiny models, few steps."""
        return cls(
            name="mini",
            n_entities=8,
            n_values=6,
            boolq_sizes=SplitSizes(train=40, validation=30, test=40),
            csqa_sizes=SplitSizes(train=40, validation=30, test=40),
            ood_boolq_sizes=SplitSizes(train=10, validation=20, test=30),
            ood_csqa_sizes=SplitSizes(train=10, validation=20, test=30),
            pretrain_lines=2_000,
            vocab_size=400,
            student_base=ModelSize(hidden_size=32, n_layers=1),
            teacher_base=ModelSize(hidden_size=48, n_layers=1),
            student_steps=20,
            teacher_base_steps=25,
            pretrain_batch=32,
            finetune_epochs=2,
        )

    def split_sizes(self, family: str, domain: str) -> SplitSizes:
        """Split sizes of the task of ``family`` (``boolq``/``csqa``) and ``domain`` (``in_domain``/``ood``)."""
        table = {
            ("boolq", "in_domain"): self.boolq_sizes,
            ("csqa", "in_domain"): self.csqa_sizes,
            ("boolq", "ood"): self.ood_boolq_sizes,
            ("csqa", "ood"): self.ood_csqa_sizes,
        }
        if (family, domain) not in table:
            raise ValueError(f"unknown task family/domain {family!r}/{domain!r}")
        return table[(family, domain)]

    def with_changes(self, **changes: object) -> "WorldConfig":
        """A copy with some fields replaced (``dataclasses.replace``)."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    def config_hash(self) -> str:
        """sha256 (16 hex digits) of the canonical JSON of every field; names a world's recipe."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]
