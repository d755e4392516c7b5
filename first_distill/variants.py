"""The training variants ``first distill train`` can run: name -> loss, and the teacher knowledge it needs.

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
from typing import TYPE_CHECKING, Any, Iterable, Mapping

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

# The flag (and TrainConfig field) that supplies each kind of knowledge.
KNOWLEDGE_FLAGS = {TEMPERED_TOPK: "--knowledge", UNTEMPERED_TOPK: "--knowledge-untempered",
                   SAMPLED: "--knowledge-sampled", ONLINE_TEACHER: "--teacher"}


@dataclass(frozen=True)
class Variant:
    """One way to train a student: ``loss`` (a function of first_distill.losses) on ``knowledge`` (or the gold tokens).

    ``knowledge``: one of ``KNOWLEDGE_KINDS``, or None for the supervised baselines.
    ``label_smoothing_epsilon``: epsilon of ``label_smoothing`` (other losses ignore it).
    """

    name: str
    loss: str
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
        from first_distill import losses

        mask = batch["loss_mask"]
        if self.loss in ("topk_kl", "topk_tail_kl", "sampled_kl"):
            return getattr(losses, self.loss)(student_logits, batch["topk_ids"], batch["topk_probs"], mask)
        if self.loss == "full_kl":
            if teacher_logits is None:
                raise ValueError(f"variant {self.name!r} needs teacher_logits (an online teacher)")
            return losses.full_kl(student_logits, teacher_logits, mask, temperature=teacher_temperature)
        if self.loss == "cross_entropy":
            return losses.cross_entropy(student_logits, batch["labels"], mask)
        return losses.label_smoothing(student_logits, batch["labels"], mask, epsilon=self.label_smoothing_epsilon)


VARIANTS: dict[str, Variant] = {variant.name: variant for variant in (
    Variant("first", "topk_kl", TEMPERED_TOPK,
            "FIRST: forward KL over the calibrated (tempered) teacher's renormalised top-k tokens"),
    Variant("topk-notemp", "topk_kl", UNTEMPERED_TOPK,
            "ablation: the same top-k KL on the untempered teacher (T = 1)"),
    Variant("topk-tail", "topk_tail_kl", TEMPERED_TOPK,
            "top-k KL plus a tail bucket holding the tempered teacher's remaining mass"),
    Variant("rs-kd", "sampled_kl", SAMPLED,
            "random-sampling KD: cross-entropy on tokens sampled from the tempered teacher"),
    Variant("full-kd", "full_kl", ONLINE_TEACHER,
            "forward KL over the full vocabulary, teacher run online at the teacher temperature"),
    Variant("ce", "cross_entropy", None, "supervised fine-tuning on the gold completion"),
    Variant("label-smoothing", "label_smoothing", None,
            "cross-entropy on the gold completion smoothed towards uniform (epsilon 0.1)", label_smoothing_epsilon=0.1),
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
