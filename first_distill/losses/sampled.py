"""Random-sampling KD (RS-KD): cross-entropy against tokens drawn from the teacher, on the chunked engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from first_distill.losses.checks import check_common, check_sparse_targets
from first_distill.losses.engine import fused_row_loss

if TYPE_CHECKING:
    import torch


def _weighted_ce_kernel(log_probs, scratch, ids, weights, *, grad_scale):
    """Rows of -sum_j w_j log s_{id_j}; gradient (sum_j w_j) s - sum_j w_j e_{id_j}."""
    import torch

    ids = ids.long()
    w = weights.to(log_probs.dtype)
    row_losses = -(w * log_probs.gather(-1, ids)).sum(-1)
    if grad_scale is None:
        return row_losses, None
    grad = torch.exp(log_probs, out=scratch).mul_((w.sum(-1) * grad_scale).unsqueeze(-1))
    return row_losses, grad.scatter_add_(-1, ids, w * -grad_scale)


def sampled_kl(student_logits: "torch.Tensor", sampled_ids: "torch.Tensor", sampled_weights: "torch.Tensor",
               mask: "torch.Tensor", chunk_size: int | None = None) -> "torch.Tensor":
    """Random-sampling KD: cross-entropy of the student against a sparse, unbiased estimate of the teacher.

    Shapes: student_logits (B, T, V), sampled_ids (B, T, s) int, sampled_weights (B, T, s) float, mask (B, T)
    bool -> scalar. Padding entries have weight 0 (and any valid id, e.g. 0).

    Estimator (Anshumann et al., "Sparse Logit Sampling", ACL 2025): draw S tokens i.i.d. from the (tempered)
    teacher p at each position; the targets are the distinct drawn ids with weights w_j = count_j / S. Then
    E[w at token v] = p_v, so with q = softmax(student_logits) over the FULL vocabulary

        loss    = mean over unmasked positions of  - sum_j w_j log q_{id_j}
        E[loss] = - sum_v p_v log q_v = KL(p || q) + H(p)

    an unbiased estimate of the full cross-entropy, and its gradient an unbiased estimate of the full KL's
    gradient (H(p) does not depend on the student). Weights from another proposal r may be importance-
    weighted by the caller (w = count / S * p / r): the loss is linear in the weights.
    """
    check_common(student_logits, mask, chunk_size)
    check_sparse_targets(student_logits, sampled_ids, sampled_weights, ("sampled_ids", "sampled_weights"))
    return fused_row_loss(student_logits, mask, chunk_size, _weighted_ce_kernel, sampled_ids, sampled_weights)
