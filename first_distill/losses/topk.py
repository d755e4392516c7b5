"""FIRST's top-k losses: the renormalised top-k KL (from logits or from hidden states) and the tail-bucket KL.

The teacher's knowledge is its k most probable tokens per position (``topk_ids``) with their tempered
probabilities (``topk_probs``). ``topk_kl`` needs only k logits per position, so it is a plain gather under
autograd, and ``topk_kl_from_hidden`` skips the logits entirely; ``topk_tail_kl`` also matches the mass outside
the top k, so it needs a full-vocabulary softmax and runs on the chunked engine (``first_distill.losses.engine``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from first_distill.losses.checks import check_common, check_sparse_targets, compute_dtype
from first_distill.losses.engine import fused_row_loss

if TYPE_CHECKING:
    import torch

# Student tail mass below this counts as zero (log clamped, no gradient through the clamp): keeps
# topk_tail_kl finite when the k tokens hold all of the student's mass (e.g. k = V).
TAIL_FLOOR = 1e-30


def topk_kl(student_logits: "torch.Tensor", topk_ids: "torch.Tensor", topk_probs: "torch.Tensor",
            mask: "torch.Tensor", chunk_size: int | None = None) -> "torch.Tensor":
    """FIRST: forward KL from the teacher's top-k distribution to the student's, both renormalised over k.

    Shapes: student_logits (B, T, V), topk_ids (B, T, k) int (distinct per position), topk_probs (B, T, k)
    float (the tempered teacher's probabilities of those tokens; any positive scale), mask (B, T) bool ->
    scalar.

        p_j = topk_probs_j / sum_i topk_probs_i
        q_j = softmax_j(student_logits[topk_ids])         (softmax over the k gathered logits only)
        loss = mean over unmasked positions of  sum_j p_j (log p_j - log q_j)

    Only the k teacher tokens are looked at, so no full-vocabulary softmax is computed: the cost is a gather
    (and, in backward, a scatter into the logits' gradient); ``chunk_size`` is accepted for a uniform
    signature and ignored, the (N, k) work arrays being small. A position whose probabilities are all 0
    contributes 0.

    Shum et al., "FIRST: Teach A Reliable Large Language Model Through Efficient Trustworthy Distillation",
    EMNLP 2024 (L_FIRST on the teacher's top-5 tokens, renormalised).
    """
    check_common(student_logits, mask, chunk_size)
    check_sparse_targets(student_logits, topk_ids, topk_probs, ("topk_ids", "topk_probs"))
    gathered = student_logits.gather(-1, topk_ids.long())[mask]  # (N, k), in the logits' dtype
    return _renormalised_kl_mean([gathered], topk_probs[mask], compute_dtype(student_logits))


def _renormalised_kl_mean(student_topk_logits: list, teacher_probs: "torch.Tensor", dtype) -> "torch.Tensor":
    """mean over rows of KL(p || softmax(z)) with p = teacher_probs renormalised; z given in row chunks (n_i, k)."""
    import torch

    n_rows = teacher_probs.shape[0]
    if n_rows == 0:
        return sum(z.sum(dtype=dtype) for z in student_topk_logits)  # 0.0, still attached to the graph
    total = torch.zeros((), dtype=dtype, device=teacher_probs.device)
    start = 0
    for z in student_topk_logits:
        p = teacher_probs[start:start + z.shape[0]].to(dtype)
        start += z.shape[0]
        p = p / p.sum(-1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
        total = total + (torch.xlogy(p, p) - p * torch.log_softmax(z.to(dtype), dim=-1)).sum()
    return total / n_rows


def topk_kl_from_hidden(hidden: "torch.Tensor", lm_head_weight: "torch.Tensor", topk_ids: "torch.Tensor",
                        topk_probs: "torch.Tensor", mask: "torch.Tensor", lm_head_bias: "torch.Tensor | None" = None,
                        chunk_size: int | None = None) -> "torch.Tensor":
    """``topk_kl`` computed from the student's final hidden states, without ever forming its (B, T, V) logits.

    Shapes: hidden (B, T, H) (the input of the output layer), lm_head_weight (V, H), lm_head_bias (V,) or None,
    topk_ids (B, T, k), topk_probs (B, T, k), mask (B, T) bool -> scalar.

        z_j  = hidden . lm_head_weight[topk_ids_j] (+ lm_head_bias[topk_ids_j])     (the k logits FIRST needs)
        loss = topk_kl on z, i.e. mean_positions sum_j p_j (log p_j - log softmax_j(z))

    FIRST's renormalised top-k KL depends on the k teacher tokens' logits only, so the output layer's matmul
    shrinks from V to k columns per position and the logits tensor (and its gradient) never exists: memory
    O(N k H) instead of O(B T V). Valid for models whose logits are exactly ``hidden @ W.T (+ b)`` (no final
    soft-capping or logit scaling). ``chunk_size`` positions at a time (default: 32 MiB of gathered rows).
    """
    import torch

    if hidden.dim() != 3 or not hidden.is_floating_point():
        raise ValueError(f"hidden must be a float (B, T, H) tensor, got {hidden.dtype} of shape {tuple(hidden.shape)}")
    if lm_head_weight.dim() != 2 or lm_head_weight.shape[1] != hidden.shape[2]:
        raise ValueError(f"lm_head_weight must have shape (V, H = {hidden.shape[2]}), got {tuple(lm_head_weight.shape)}")
    if lm_head_bias is not None and tuple(lm_head_bias.shape) != (lm_head_weight.shape[0],):
        raise ValueError(f"lm_head_bias must have shape ({lm_head_weight.shape[0]},), got {tuple(lm_head_bias.shape)}")
    check_common(hidden, mask, chunk_size)  # (B, T) of hidden = (B, T) of the logits it stands for
    check_sparse_targets(hidden, topk_ids, topk_probs, ("topk_ids", "topk_probs"))
    rows_hidden = hidden[mask]  # (N, H)
    rows_ids = topk_ids[mask].long()  # (N, k)
    k, width = rows_ids.shape[1], hidden.shape[2]
    step = chunk_size or max(1, (1 << 25) // (4 * k * width))
    chunks = []
    for start in range(0, rows_ids.shape[0], step):
        ids = rows_ids[start:start + step]
        rows_weight = lm_head_weight[ids]  # (n, k, H)
        z = torch.bmm(rows_weight, rows_hidden[start:start + step].unsqueeze(-1)).squeeze(-1)  # (n, k)
        chunks.append(z if lm_head_bias is None else z + lm_head_bias[ids])
    if not chunks:  # nothing unmasked: an exact 0.0 attached to both inputs
        chunks = [(rows_hidden.sum() + lm_head_weight[:0].sum()).reshape(1, 1)]
    return _renormalised_kl_mean(chunks, topk_probs[mask], compute_dtype(hidden))


def _topk_tail_kernel(log_probs, scratch, topk_ids, topk_probs, *, grad_scale):
    """Row kernel of ``topk_tail_kl``; see its docstring for the equations."""
    import torch

    ids = topk_ids.long()
    p = topk_probs.to(log_probs.dtype).clamp_min(0.0)
    p_sum = p.sum(-1, keepdim=True)
    p = torch.where(p_sum > 1.0, p / p_sum, p)  # quantised probabilities may overshoot 1 by a hair
    p_top = p.sum(-1)  # (n,)
    p_tail = (1.0 - p_top).clamp_min(0.0)

    log_q = log_probs.gather(-1, ids)  # (n, k)
    # The student's tail mass as a sum of the other V - k probabilities (all positive, so accurate even
    # when tiny; 1 - sum_j q_j would cancel).
    probs = torch.exp(log_probs, out=scratch)  # (n, V)
    probs.scatter_(-1, ids, 0.0)
    tail = probs.sum(-1)  # (n,)
    tail_live = tail > TAIL_FLOOR
    log_tail = torch.where(tail_live, tail, torch.full_like(tail, TAIL_FLOOR)).log()

    row_losses = (torch.xlogy(p, p) - p * log_q).sum(-1) + torch.xlogy(p_tail, p_tail) - p_tail * log_tail
    if grad_scale is None:
        return row_losses, None
    # d/dz_u = s_u (c - r) outside the top k, s_u c - p_u inside; r = p_tail / tail (0 when floored),
    # c = p_top + r * tail (= 1 unless floored).
    r = torch.where(tail_live, p_tail / torch.where(tail_live, tail, torch.ones_like(tail)), torch.zeros_like(tail))
    c = p_top + r * tail
    probs.mul_(((c - r) * grad_scale).unsqueeze(-1))
    probs.scatter_(-1, ids, (log_q.exp() * c.unsqueeze(-1) - p) * grad_scale)
    return row_losses, probs


def topk_tail_kl(student_logits: "torch.Tensor", topk_ids: "torch.Tensor", topk_probs: "torch.Tensor",
                 mask: "torch.Tensor", chunk_size: int | None = None) -> "torch.Tensor":
    """Forward KL over the teacher's k tokens plus one "tail" bucket holding everybody else's mass.

    Shapes: student_logits (B, T, V), topk_ids (B, T, k) int (distinct per position), topk_probs (B, T, k)
    the teacher's true probabilities of those tokens (sum <= 1), mask (B, T) bool -> scalar.

        p_j    = topk_probs_j (divided by their sum only if that exceeds 1, e.g. after quantisation)
        p_tail = max(0, 1 - sum_j p_j)
        q_j    = softmax(student_logits)_{topk_ids_j}            (full-vocabulary softmax)
        q_tail = sum_{v not in topk_ids} softmax(student_logits)_v
        loss   = mean over unmasked positions of  sum_j p_j log(p_j / q_j) + p_tail log(p_tail / q_tail)

    ``q_tail`` is summed over the V - k other tokens (no ``1 - sum`` cancellation), so it is accurate even
    when tiny; it is floored at ``TAIL_FLOOR`` = 1e-30 (no gradient through the floor), so k = V gives the
    full KL rather than inf. Unlike ``topk_kl`` this also teaches the student how much mass the top k hold
    (the teacher's confidence), at the price of a full-vocabulary softmax per position.

    Gradient (s = full softmax, r = p_tail / q_tail, 0 when floored; c = sum_j p_j + r q_tail = 1 unless
    floored): dloss/dz_u = s_u (c - r) for u outside the top k, and s_u c - p_u for u inside.

    The tail bucket follows TRL's ``add_tail_bucket`` (trl/experimental/sdft/loss_utils.py); the top-k
    teacher knowledge is FIRST's (Shum et al., EMNLP 2024).
    """
    check_common(student_logits, mask, chunk_size)
    check_sparse_targets(student_logits, topk_ids, topk_probs, ("topk_ids", "topk_probs"))
    return fused_row_loss(student_logits, mask, chunk_size, _topk_tail_kernel, topk_ids, topk_probs)
