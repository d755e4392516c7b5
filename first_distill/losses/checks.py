"""Input checks shared by the losses, and the dtype they compute in (pure; torch imported inside)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def check_common(student_logits: "torch.Tensor", mask: "torch.Tensor", chunk_size: int | None) -> None:
    """``ValueError`` unless student_logits is a float (B, T, V) tensor, mask a bool (B, T) one and chunk_size ok."""
    import torch

    if student_logits.dim() != 3 or not student_logits.is_floating_point():
        raise ValueError(f"student_logits must be a float (B, T, V) tensor, got {student_logits.dtype} "
                         f"of shape {tuple(student_logits.shape)}")
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(student_logits.shape[:2]):
        raise ValueError(f"mask must be a bool (B, T) = {tuple(student_logits.shape[:2])} tensor, "
                         f"got {mask.dtype} of shape {tuple(mask.shape)}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")


def check_sparse_targets(student_logits: "torch.Tensor", ids: "torch.Tensor", weights: "torch.Tensor",
                         names: tuple[str, str]) -> None:
    """``ValueError`` unless ids is an integer (B, T, k) tensor and weights a float tensor of the same shape."""
    bt = tuple(student_logits.shape[:2])
    if ids.dim() != 3 or tuple(ids.shape[:2]) != bt or ids.is_floating_point():
        raise ValueError(f"{names[0]} must be an integer (B, T, k) tensor with (B, T) = {bt}, "
                         f"got {ids.dtype} of shape {tuple(ids.shape)}")
    if tuple(weights.shape) != tuple(ids.shape) or not weights.is_floating_point():
        raise ValueError(f"{names[1]} must be a float tensor shaped like {names[0]} {tuple(ids.shape)}, "
                         f"got {weights.dtype} of shape {tuple(weights.shape)}")


def check_labels(student_logits: "torch.Tensor", labels: "torch.Tensor") -> None:
    """``ValueError`` unless labels is an integer (B, T) tensor matching the logits."""
    if tuple(labels.shape) != tuple(student_logits.shape[:2]) or labels.is_floating_point():
        raise ValueError(f"labels must be an integer (B, T) = {tuple(student_logits.shape[:2])} tensor, "
                         f"got {labels.dtype} of shape {tuple(labels.shape)}")


def compute_dtype(student_logits: "torch.Tensor") -> "torch.dtype":
    """fp32, or fp64 when the logits already are (gradcheck)."""
    import torch

    return torch.promote_types(student_logits.dtype, torch.float32)
