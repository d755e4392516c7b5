"""Online-teacher KD: forward KL over the full vocabulary, on the chunked engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from first_distill.losses.checks import check_common
from first_distill.losses.engine import fused_row_loss

if TYPE_CHECKING:
    import torch


def full_kl(student_logits: "torch.Tensor", teacher_logits: "torch.Tensor", mask: "torch.Tensor",
            temperature: float = 1.0, chunk_size: int | None = None) -> "torch.Tensor":
    """Online-teacher KD: forward KL over the full vocabulary from the tempered teacher to the student.

    Shapes: student_logits (B, T, V), teacher_logits (B, T, V) (treated as a constant: no gradient flows
    to it), mask (B, T) bool -> scalar.

        p = softmax(teacher_logits / temperature),  q = softmax(student_logits)
        loss = mean over unmasked positions of  sum_v p_v (log p_v - log q_v)

    Only the teacher is tempered: FIRST calibrates the teacher with T and trains the student at T = 1.
    Tokens with p_v = 0 contribute 0. Hinton et al., "Distilling the Knowledge in a Neural Network", 2015.
    """
    import torch

    check_common(student_logits, mask, chunk_size)
    if tuple(teacher_logits.shape) != tuple(student_logits.shape) or not teacher_logits.is_floating_point():
        raise ValueError(f"teacher_logits must be a float tensor shaped like student_logits "
                         f"{tuple(student_logits.shape)}, got {teacher_logits.dtype} of shape {tuple(teacher_logits.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")

    def kernel(log_probs, scratch, teacher_rows, *, grad_scale):
        teacher_log_p = torch.log_softmax(teacher_rows.to(log_probs.dtype) / temperature, dim=-1)  # (n, V)
        p = teacher_log_p.exp()
        pointwise = teacher_log_p.sub_(log_probs).mul_(p)  # p (log p - log q)
        row_losses = pointwise.masked_fill_(p == 0, 0.0).sum(-1)  # 0 * (-inf) terms are 0
        if grad_scale is None:
            return row_losses, None
        return row_losses, torch.exp(log_probs, out=scratch).sub_(p).mul_(grad_scale)

    return fused_row_loss(student_logits, mask, chunk_size, kernel, teacher_logits.detach())
