"""The supervised baselines on the gold tokens: cross-entropy and label smoothing, on the chunked engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from first_distill.losses.checks import check_common, check_labels
from first_distill.losses.engine import fused_row_loss

if TYPE_CHECKING:
    import torch


def cross_entropy(student_logits: "torch.Tensor", labels: "torch.Tensor", mask: "torch.Tensor",
                  chunk_size: int | None = None) -> "torch.Tensor":
    """Next-token cross-entropy (the supervised baseline).

    Shapes: student_logits (B, T, V), labels (B, T) int (the target token at each position; values under
    masked positions are ignored, e.g. -100), mask (B, T) bool -> scalar.

        loss = mean over unmasked positions of  -log softmax(student_logits)_{label}

    Equal to ``torch.nn.functional.cross_entropy`` on the unmasked positions (reduction="mean").
    """
    check_common(student_logits, mask, chunk_size)
    check_labels(student_logits, labels)
    return label_smoothing(student_logits, labels, mask, epsilon=0.0, chunk_size=chunk_size)


def label_smoothing(student_logits: "torch.Tensor", labels: "torch.Tensor", mask: "torch.Tensor",
                    epsilon: float = 0.1, chunk_size: int | None = None) -> "torch.Tensor":
    """Cross-entropy against the label smoothed towards uniform (a calibration baseline).

    Shapes as ``cross_entropy``.

        target = (1 - epsilon) e_label + epsilon / V
        loss   = mean over unmasked positions of  (1 - epsilon) (-log q_label) + epsilon * mean_v(-log q_v)

    the semantics of ``torch.nn.functional.cross_entropy(..., label_smoothing=epsilon)``; gradient
    ``softmax(z) - target``. Szegedy et al., "Rethinking the Inception Architecture for Computer Vision",
    CVPR 2016.
    """
    import torch

    check_common(student_logits, mask, chunk_size)
    check_labels(student_logits, labels)
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
    vocab_size = student_logits.shape[-1]

    def kernel(log_probs, scratch, label_rows, *, grad_scale):
        ids = label_rows.long().unsqueeze(-1)  # (n, 1)
        row_losses = -(1.0 - epsilon) * log_probs.gather(-1, ids).squeeze(-1)
        if epsilon > 0:
            row_losses = row_losses - epsilon * log_probs.mean(-1)
        if grad_scale is None:
            return row_losses, None
        grad = torch.exp(log_probs, out=scratch).mul_(grad_scale)
        if epsilon > 0:
            grad.sub_(epsilon / vocab_size * grad_scale)
        return row_losses, grad.scatter_add_(-1, ids, torch.full(ids.shape, -(1.0 - epsilon) * grad_scale,
                                                                 dtype=grad.dtype, device=grad.device))

    return fused_row_loss(student_logits, mask, chunk_size, kernel, labels)
