"""Distillation and baseline losses on a student's next-token logits: pure torch functions.

Every loss takes ``student_logits (B, T, V)`` (any float dtype), per-position targets and ``mask (B, T)``
(bool, True = this position carries loss; only completion tokens do) and returns a float32 scalar
(float64 for float64 logits): the mean over the N unmasked positions. With N = 0 the result is 0.0 and
the gradient a finite zero.

Memory and speed. A fp32 copy of (B, T, V) logits is the largest tensor of a KD step (8 x 256 x 49152 x 4 B
= 400 MB), and saving one per loss term for backward doubles it. The full-vocabulary losses therefore run
as one fused autograd function: it walks the unmasked positions ``chunk_size`` rows at a time (default
``auto_chunk_size``: 32 MiB of fp32 rows on CPU, 256 MiB on a GPU), copies the chunk into a reused fp32
buffer, takes its log-softmax, computes the loss *and its gradient* in closed form, and writes the gradient
(in the logits' dtype) into the buffer autograd needs anyway. Nothing logits-sized is saved, no fp32 copy
of all positions exists at once, and backward is at most one multiply. Rows are picked per chunk, not with
``student_logits[mask]`` (which copies every unmasked row at once). ``topk_kl`` needs only k logits per
position, so it is a plain gather under autograd, and ``topk_kl_from_hidden`` skips the logits entirely.
Callers should align targets with the logits (shift labels and masks left, mask the last position) rather
than pass ``logits[:, :-1]``: slicing works but its backward copies the whole logits gradient once more.

Closed-form gradients (z = logits of a row, s = softmax(z) over the full vocabulary, e_v = one-hot of v):

- weighted cross-entropy ``-sum_j w_j log s_{id_j}``  ->  ``(sum_j w_j) s - sum_j w_j e_{id_j}``
  (``cross_entropy``, ``sampled_kl``; ``full_kl`` -> ``s - p``; ``label_smoothing`` -> ``s - target``);
- ``topk_tail_kl``: see its docstring.

All are checked against finite differences (``torch.autograd.gradcheck``, float64) in the tests.

References: FIRST — Shum et al., "FIRST: Teach A Reliable Large Language Model Through Efficient Trustworthy
Distillation", EMNLP 2024; sparse logit sampling — Anshumann et al., "Sparse Logit Sampling: Accelerating
Knowledge Distillation in LLMs", ACL 2025; label smoothing — Szegedy et al., CVPR 2016.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch

# Student tail mass below this counts as zero (log clamped, no gradient through the clamp): keeps
# topk_tail_kl finite when the k tokens hold all of the student's mass (e.g. k = V).
TAIL_FLOOR = 1e-30


# ----------------------------------------------------------------------------------------------- checks


def _check_common(student_logits: "torch.Tensor", mask: "torch.Tensor", chunk_size: int | None) -> None:
    import torch

    if student_logits.dim() != 3 or not student_logits.is_floating_point():
        raise ValueError(f"student_logits must be a float (B, T, V) tensor, got {student_logits.dtype} "
                         f"of shape {tuple(student_logits.shape)}")
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(student_logits.shape[:2]):
        raise ValueError(f"mask must be a bool (B, T) = {tuple(student_logits.shape[:2])} tensor, "
                         f"got {mask.dtype} of shape {tuple(mask.shape)}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")


def _check_sparse_targets(student_logits: "torch.Tensor", ids: "torch.Tensor", weights: "torch.Tensor",
                          names: tuple[str, str]) -> None:
    bt = tuple(student_logits.shape[:2])
    if ids.dim() != 3 or tuple(ids.shape[:2]) != bt or ids.is_floating_point():
        raise ValueError(f"{names[0]} must be an integer (B, T, k) tensor with (B, T) = {bt}, "
                         f"got {ids.dtype} of shape {tuple(ids.shape)}")
    if tuple(weights.shape) != tuple(ids.shape) or not weights.is_floating_point():
        raise ValueError(f"{names[1]} must be a float tensor shaped like {names[0]} {tuple(ids.shape)}, "
                         f"got {weights.dtype} of shape {tuple(weights.shape)}")


def _check_labels(student_logits: "torch.Tensor", labels: "torch.Tensor") -> None:
    if tuple(labels.shape) != tuple(student_logits.shape[:2]) or labels.is_floating_point():
        raise ValueError(f"labels must be an integer (B, T) = {tuple(student_logits.shape[:2])} tensor, "
                         f"got {labels.dtype} of shape {tuple(labels.shape)}")


def _compute_dtype(student_logits: "torch.Tensor") -> "torch.dtype":
    """fp32, or fp64 when the logits already are (gradcheck)."""
    import torch

    return torch.promote_types(student_logits.dtype, torch.float32)


# ------------------------------------------------------------------------------------------ fused core


def auto_chunk_size(vocab_size: int, device: "torch.device") -> int:
    """Rows per chunk when ``chunk_size`` is None: 32 MiB of fp32 rows on CPU, 256 MiB on accelerators.

    On CPU, buffers up to 32 MiB stay in glibc's heap and are reused; larger ones are mmapped afresh and
    page-faulted on every call, which costs more than the arithmetic. On a GPU, larger chunks mean fewer
    kernel launches. (262 rows at V = 32000, 170 at V = 49152 on CPU.)
    """
    budget = (1 << 25) if getattr(device, "type", str(device)) == "cpu" else (1 << 28)
    return max(1, budget // (4 * vocab_size))


def _rows_view(logits: "torch.Tensor", rows: "torch.Tensor") -> "tuple[torch.Tensor, torch.Tensor]":
    """(source (R, V), source_rows (N,)): ``source[source_rows[i]]`` is the logits row at flat position rows[i]."""
    batch, seq, vocab = logits.shape
    if logits.stride(2) == 1 and logits.stride(1) == vocab and logits.stride(0) % vocab == 0:
        rows_per_batch = logits.stride(0) // vocab  # seq, or more for a view like logits[:, :-1]
        span = (batch - 1) * rows_per_batch + seq
        source = logits.as_strided((span, vocab), (vocab, 1))
        return source, rows // seq * rows_per_batch + rows % seq
    return logits.reshape(-1, vocab), rows  # unusual strides: reshape copies once


# A row kernel gets ``log_probs`` (n, V) = log_softmax of n unmasked rows (compute dtype, read-only),
# ``scratch`` (n, V) of the same dtype (free to overwrite), the matching rows of each target tensor and
# ``grad_scale`` (None when no gradient is wanted). It returns (row_losses (n,), grad_scale * d row_loss / dz
# (n, V), usually written into ``scratch``, or None).
RowKernel = Callable[..., "tuple[torch.Tensor, torch.Tensor | None]"]


@functools.lru_cache(maxsize=None)
def _fused_function():
    """The autograd.Function behind the full-vocabulary losses (a class built on first use: torch is lazy)."""
    import torch

    class FusedRowLoss(torch.autograd.Function):
        @staticmethod
        def forward(ctx, logits, mask, chunk_size, kernel, *targets):
            batch, seq, vocab = logits.shape
            compute_dtype = _compute_dtype(logits)
            if chunk_size is None:
                chunk_size = auto_chunk_size(vocab, logits.device)
            flat_mask = mask.reshape(-1)
            rows = flat_mask.nonzero().squeeze(1)  # (N,) flat positions b * seq + t
            n_rows = rows.numel()
            grad_scale = 1.0 / max(n_rows, 1) if ctx.needs_input_grad[0] else None
            total = torch.zeros((), dtype=compute_dtype, device=logits.device)
            # Rows of the logits as a (R, V) view of their storage, so a chunk is one index_select even for
            # the strided view logits[:, :-1]; source_rows maps flat positions to rows of that view.
            source, source_rows = _rows_view(logits, rows) if n_rows else (None, None)
            flat_targets = [x.reshape(batch * seq, *x.shape[2:]) for x in targets]  # views when contiguous
            grad = grad_rows = None
            if grad_scale is not None:
                grad = torch.empty((batch, seq, vocab), dtype=logits.dtype, device=logits.device)
                grad_rows = grad.view(-1, vocab)
                grad_rows.index_fill_(0, (~flat_mask).nonzero().squeeze(1), 0)  # masked rows; others below
            n_work = min(chunk_size, n_rows)
            selected = torch.empty((n_work, vocab), dtype=compute_dtype, device=logits.device)
            log_probs = torch.empty_like(selected)
            staging = (torch.empty((n_work, vocab), dtype=logits.dtype, device=logits.device)
                       if logits.dtype != compute_dtype else None)  # low-precision rows in and gradients out
            for start in range(0, n_rows, chunk_size):
                chunk = rows[start:start + chunk_size]
                n = chunk.numel()
                if staging is None:
                    torch.index_select(source, 0, source_rows[start:start + n], out=selected[:n])
                else:
                    torch.index_select(source, 0, source_rows[start:start + n], out=staging[:n])
                    selected[:n].copy_(staging[:n])
                torch.log_softmax(selected[:n], -1, out=log_probs[:n])
                row_losses, row_grad = kernel(log_probs[:n], selected[:n], *(x.index_select(0, chunk) for x in flat_targets),
                                              grad_scale=grad_scale)
                total += row_losses.sum()
                if grad_rows is not None:
                    if staging is not None:
                        row_grad = staging[:n].copy_(row_grad)
                    grad_rows.index_copy_(0, chunk, row_grad)
            if grad is not None:
                ctx.save_for_backward(grad)
            return total / max(n_rows, 1)

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, grad_output):
            (grad,) = ctx.saved_tensors
            # The usual grad_output is exactly 1: hand the buffer over as is. Otherwise (a weighted sum of
            # losses, loss scaling) scale it in place rather than allocate another logits-sized tensor; a
            # second backward through the same graph is then refused by autograd's saved-tensor version
            # check instead of silently scaling twice.
            if not bool(grad_output == 1):
                grad = grad.mul_(grad_output.to(grad.dtype))
            return (grad, None, None, None, *(None for _ in ctx.needs_input_grad[4:]))

    return FusedRowLoss


def _fused_row_loss(student_logits, mask, chunk_size: int | None, kernel: RowKernel, *targets):
    return _fused_function().apply(student_logits, mask, chunk_size, kernel, *targets)


# --------------------------------------------------------------------------------------- top-k losses


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
    _check_common(student_logits, mask, chunk_size)
    _check_sparse_targets(student_logits, topk_ids, topk_probs, ("topk_ids", "topk_probs"))
    gathered = student_logits.gather(-1, topk_ids.long())[mask]  # (N, k), in the logits' dtype
    return _renormalised_kl_mean([gathered], topk_probs[mask], _compute_dtype(student_logits))


def _renormalised_kl_mean(student_topk_logits: list, teacher_probs: "torch.Tensor", compute_dtype) -> "torch.Tensor":
    """mean over rows of KL(p || softmax(z)) with p = teacher_probs renormalised; z given in row chunks (n_i, k)."""
    import torch

    n_rows = teacher_probs.shape[0]
    if n_rows == 0:
        return sum(z.sum(dtype=compute_dtype) for z in student_topk_logits)  # 0.0, still attached to the graph
    total = torch.zeros((), dtype=compute_dtype, device=teacher_probs.device)
    start = 0
    for z in student_topk_logits:
        p = teacher_probs[start:start + z.shape[0]].to(compute_dtype)
        start += z.shape[0]
        p = p / p.sum(-1, keepdim=True).clamp_min(torch.finfo(compute_dtype).tiny)
        total = total + (torch.xlogy(p, p) - p * torch.log_softmax(z.to(compute_dtype), dim=-1)).sum()
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
    _check_common(hidden, mask, chunk_size)  # (B, T) of hidden = (B, T) of the logits it stands for
    _check_sparse_targets(hidden, topk_ids, topk_probs, ("topk_ids", "topk_probs"))
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
    return _renormalised_kl_mean(chunks, topk_probs[mask], _compute_dtype(hidden))


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
    _check_common(student_logits, mask, chunk_size)
    _check_sparse_targets(student_logits, topk_ids, topk_probs, ("topk_ids", "topk_probs"))
    return _fused_row_loss(student_logits, mask, chunk_size, _topk_tail_kernel, topk_ids, topk_probs)


# ------------------------------------------------------------------------------ sampled and full KL


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
    _check_common(student_logits, mask, chunk_size)
    _check_sparse_targets(student_logits, sampled_ids, sampled_weights, ("sampled_ids", "sampled_weights"))
    return _fused_row_loss(student_logits, mask, chunk_size, _weighted_ce_kernel, sampled_ids, sampled_weights)


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

    _check_common(student_logits, mask, chunk_size)
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

    return _fused_row_loss(student_logits, mask, chunk_size, kernel, teacher_logits.detach())


# ------------------------------------------------------------------------------------------ baselines


def cross_entropy(student_logits: "torch.Tensor", labels: "torch.Tensor", mask: "torch.Tensor",
                  chunk_size: int | None = None) -> "torch.Tensor":
    """Next-token cross-entropy (the supervised baseline).

    Shapes: student_logits (B, T, V), labels (B, T) int (the target token at each position; values under
    masked positions are ignored, e.g. -100), mask (B, T) bool -> scalar.

        loss = mean over unmasked positions of  -log softmax(student_logits)_{label}

    Equal to ``torch.nn.functional.cross_entropy`` on the unmasked positions (reduction="mean").
    """
    _check_common(student_logits, mask, chunk_size)
    _check_labels(student_logits, labels)
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

    _check_common(student_logits, mask, chunk_size)
    _check_labels(student_logits, labels)
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

    return _fused_row_loss(student_logits, mask, chunk_size, kernel, labels)
