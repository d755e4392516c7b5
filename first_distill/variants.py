"""The training variants ``first distill --variants`` can run: name -> loss function, and the teacher knowledge it needs.

Every variant trains the same initial student on the same examples in the same order with the same schedule;
only the loss (and its targets) differ, so their students can be compared one for one.

    variant          loss (first_distill.losses)   knowledge
    first            topk_kl                       tempered top-k store (T from the teacher's calibration)
    topk-notemp      topk_kl                       untempered top-k store (T = 1)
    topk-tail        topk_tail_kl                  tempered top-k store (its tail mass is implicit)
    rs-kd            sampled_kl                    sampled store (extracted with --selection sample)
    full-kd          full_kl                       the teacher itself, run online (T of the tempered store)
    ce               cross_entropy                 none: the gold completion
    label-smoothing  label_smoothing (eps 0.1)     none: the gold completion

Each variant names one kind of knowledge (``TEMPERED_TOPK``, ``UNTEMPERED_TOPK``, ``SAMPLED``,
``ONLINE_TEACHER``) or none, so a pipeline running several variants extracts each store once and shares it
(``knowledge_needed``). References: FIRST — Shum et al., EMNLP 2024; random-sampling KD — Anshumann et al.,
ACL 2025; label smoothing — Szegedy et al., CVPR 2016; KD — Hinton et al., 2015.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from first_distill import losses
from first_eval.errors import InputError, did_you_mean

if TYPE_CHECKING:
    import torch

TEMPERED_TOPK = "tempered-topk"
UNTEMPERED_TOPK = "untempered-topk"
SAMPLED = "sampled"
ONLINE_TEACHER = "online-teacher"
KNOWLEDGE_KINDS = (TEMPERED_TOPK, UNTEMPERED_TOPK, SAMPLED, ONLINE_TEACHER)
STORE_KINDS = (TEMPERED_TOPK, UNTEMPERED_TOPK, SAMPLED)

# ``first_distill.teacher.extract.ExtractConfig`` settings that make each kind of store (the teacher
# temperature of a tempered store is the user's choice: auto, a calibrators.json, or a number).
STORE_EXTRACTION = {TEMPERED_TOPK: {"selection": "topk"},
                    UNTEMPERED_TOPK: {"selection": "topk", "teacher_temperature": "none"},
                    SAMPLED: {"selection": "sample"}}

# A variant's loss: ``loss_fn(student_logits (B, T, V), batch, *, teacher_logits, teacher_temperature,
# label_smoothing_epsilon) -> scalar``. Each adapter below hands its first_distill.losses function the batch
# entries (see ``first_distill.collator``) and options it needs and ignores the others.
LossFn = Callable[..., "torch.Tensor"]


def _topk_kl(student_logits, batch, **_):
    return losses.topk_kl(student_logits, batch["topk_ids"], batch["topk_probs"], batch["loss_mask"])


def _topk_tail_kl(student_logits, batch, **_):
    return losses.topk_tail_kl(student_logits, batch["topk_ids"], batch["topk_probs"], batch["loss_mask"])


def _sampled_kl(student_logits, batch, **_):  # the collator puts sampled ids and weights under the top-k keys
    return losses.sampled_kl(student_logits, batch["topk_ids"], batch["topk_probs"], batch["loss_mask"])


def _full_kl(student_logits, batch, *, teacher_logits, teacher_temperature, **_):
    return losses.full_kl(student_logits, teacher_logits, batch["loss_mask"], temperature=teacher_temperature)


def _cross_entropy(student_logits, batch, **_):
    return losses.cross_entropy(student_logits, batch["labels"], batch["loss_mask"])


def _label_smoothing(student_logits, batch, *, label_smoothing_epsilon, **_):
    return losses.label_smoothing(student_logits, batch["labels"], batch["loss_mask"], epsilon=label_smoothing_epsilon)


@dataclass(frozen=True)
class Variant:
    """One way to train a student: ``loss_fn`` (a first_distill.losses function) on ``knowledge`` (or the gold tokens).

    ``loss_name``: the name of that first_distill.losses function (for people and tests).
    ``loss_fn``: its adapter to a collated batch (``LossFn``).
    ``knowledge``: one of ``KNOWLEDGE_KINDS``, or None for the supervised baselines.
    ``label_smoothing_epsilon``: epsilon of ``label_smoothing`` (other losses ignore it).
    """

    name: str
    loss_name: str
    loss_fn: LossFn
    knowledge: str | None
    summary: str
    label_smoothing_epsilon: float = 0.0

    @property
    def needs_store(self) -> bool:
        """True when the collator must gather top-k (or sampled) rows from a knowledge store."""
        return self.knowledge in STORE_KINDS

    def compute_loss(self, student_logits: "torch.Tensor", batch: Mapping[str, Any],
                     teacher_logits: "torch.Tensor | None" = None, teacher_temperature: float = 1.0) -> "torch.Tensor":
        """The variant's loss on one collated batch (see ``first_distill.collator``): a scalar.

        student_logits (B, T, V); batch["loss_mask"] (B, T) bool, batch["labels"] (B, T) (next tokens, -100
        where masked), batch["topk_ids"] / batch["topk_probs"] (B, T, k) for store variants (sampled ids and
        weights for ``rs-kd``); teacher_logits (B, T, V) for ``full-kd``, tempered by ``teacher_temperature``.
        """
        if self.knowledge == ONLINE_TEACHER and teacher_logits is None:
            raise ValueError(f"variant {self.name!r} needs teacher_logits (an online teacher)")
        return self.loss_fn(student_logits, batch, teacher_logits=teacher_logits, teacher_temperature=teacher_temperature,
                            label_smoothing_epsilon=self.label_smoothing_epsilon)


VARIANTS: dict[str, Variant] = {variant.name: variant for variant in (
    Variant("first", "topk_kl", _topk_kl, TEMPERED_TOPK,
            "FIRST: forward KL over the calibrated (tempered) teacher's renormalised top-k tokens"),
    Variant("topk-notemp", "topk_kl", _topk_kl, UNTEMPERED_TOPK,
            "ablation: the same top-k KL on the untempered teacher (T = 1)"),
    Variant("topk-tail", "topk_tail_kl", _topk_tail_kl, TEMPERED_TOPK,
            "top-k KL plus a tail bucket holding the tempered teacher's remaining mass"),
    Variant("rs-kd", "sampled_kl", _sampled_kl, SAMPLED,
            "random-sampling KD: cross-entropy on tokens sampled from the tempered teacher"),
    Variant("full-kd", "full_kl", _full_kl, ONLINE_TEACHER,
            "forward KL over the full vocabulary, teacher run online at the teacher temperature"),
    Variant("ce", "cross_entropy", _cross_entropy, None, "supervised fine-tuning on the gold completion"),
    Variant("label-smoothing", "label_smoothing", _label_smoothing, None,
            "cross-entropy on the gold completion smoothed towards uniform (epsilon 0.1)",
            label_smoothing_epsilon=0.1),
)}


def get_variant(name: str) -> Variant:
    """The variant called ``name``; ``InputError`` with a did-you-mean hint for an unknown one."""
    if name not in VARIANTS:
        raise InputError(f"--variants: {did_you_mean(name, tuple(VARIANTS), what='variant')}")
    return VARIANTS[name]


def parse_variants(names: Iterable[str]) -> tuple[Variant, ...]:
    """Variants in the given order, duplicates dropped; ``InputError`` for an empty list or an unknown name."""
    seen: dict[str, Variant] = {}
    for name in names:
        variant = get_variant(str(name).strip())
        seen.setdefault(variant.name, variant)
    if not seen:
        raise InputError(f"--variants is empty; choose from {', '.join(VARIANTS)}")
    return tuple(seen.values())


def knowledge_needed(variants: Iterable[Variant]) -> tuple[str, ...]:
    """The distinct kinds of knowledge ``variants`` need, in ``KNOWLEDGE_KINDS`` order (each extracted once)."""
    wanted = {variant.knowledge for variant in variants}
    return tuple(kind for kind in KNOWLEDGE_KINDS if kind in wanted)
