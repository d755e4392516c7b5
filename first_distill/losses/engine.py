"""The chunked engine behind the full-vocabulary losses: one fused autograd function walking the unmasked rows.

Memory and speed. A fp32 copy of (B, T, V) logits is the largest tensor of a KD step (8 x 256 x 49152 x 4 B
= 400 MB), and saving one per loss term for backward doubles it. The full-vocabulary losses therefore run
as one fused autograd function: it walks the unmasked positions ``chunk_size`` rows at a time (default
``auto_chunk_size``: 32 MiB of fp32 rows on CPU, 256 MiB on a GPU), copies the chunk into a reused fp32
buffer, takes its log-softmax, computes the loss *and its gradient* in closed form (a ``RowKernel``), and
writes the gradient (in the logits' dtype) into the buffer autograd needs anyway. Nothing logits-sized is
saved, no fp32 copy of all positions exists at once, and backward is at most one multiply. Rows are picked
per chunk, not with ``student_logits[mask]`` (which copies every unmasked row at once).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable

from first_distill.losses.checks import compute_dtype

if TYPE_CHECKING:
    import torch


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
            dtype = compute_dtype(logits)
            if chunk_size is None:
                chunk_size = auto_chunk_size(vocab, logits.device)
            flat_mask = mask.reshape(-1)
            rows = flat_mask.nonzero().squeeze(1)  # (N,) flat positions b * seq + t
            n_rows = rows.numel()
            grad_scale = 1.0 / max(n_rows, 1) if ctx.needs_input_grad[0] else None
            total = torch.zeros((), dtype=dtype, device=logits.device)
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
            selected = torch.empty((n_work, vocab), dtype=dtype, device=logits.device)
            log_probs = torch.empty_like(selected)
            staging = (torch.empty((n_work, vocab), dtype=logits.dtype, device=logits.device)
                       if logits.dtype != dtype else None)  # low-precision rows in and gradients out
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


def fused_row_loss(student_logits: "torch.Tensor", mask: "torch.Tensor", chunk_size: int | None, kernel: RowKernel,
                   *targets: "torch.Tensor") -> "torch.Tensor":
    """Mean of ``kernel``'s row losses over the unmasked rows, differentiable in ``student_logits`` only."""
    return _fused_function().apply(student_logits, mask, chunk_size, kernel, *targets)
