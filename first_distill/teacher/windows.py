"""How the training sequences are cut into teacher batches, and into one block per data-parallel rank.

Examples are taken in windows of ``WINDOW_BATCHES * batch_size`` consecutive indices; inside a window they are
sorted by length (longest first), so a batch's sequences are of about the same length and padding is small.
Windows are aligned to absolute indices, so a resumed run recomputes the window it stopped in with the same
batches (and writes byte-identical shards), and a rank's block of whole windows forms exactly the batches a
one-process run forms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from first_distill.teacher.ranks import split_ranges

WINDOW_BATCHES = 32


@dataclass(frozen=True)
class Window:
    """Examples ``first..stop-1`` and their teacher batches (index arrays, longest first; examples without
    completion tokens are in no batch: they store nothing)."""

    first: int
    stop: int
    batches: tuple[np.ndarray, ...]


def plan_windows(lengths: np.ndarray, n_completion: np.ndarray, start: int, batch_size: int,
                 span: tuple[int, int] | None = None) -> list[Window]:
    """The windows from the one holding ``start`` on (windows are aligned to multiples of their size), clipped to
    ``span`` = (first, stop) (one rank's sequences; default: all)."""
    first_index, stop = span if span is not None else (0, len(lengths))
    size = WINDOW_BATCHES * batch_size
    windows = []
    for aligned in range(start - start % size, stop, size):
        first = max(aligned, first_index)
        indices = np.arange(first, min(aligned + size, stop))
        indices = indices[n_completion[indices] > 0]
        ordered = indices[np.lexsort((indices, -lengths[indices]))]
        windows.append(Window(first, min(aligned + size, stop),
                              tuple(ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size))))
    return windows


def rank_ranges(lengths: np.ndarray, n_completion: np.ndarray, batch_size: int,
                world_size: int) -> tuple[tuple[int, int], ...]:
    """Each rank's block of consecutive sequences: whole windows (so its batches are a one-process run's), of
    about equal teacher cost (tokens through the teacher, padding included: rows x width per batch)."""
    windows = plan_windows(lengths, n_completion, 0, batch_size)
    costs = [sum(len(batch) * int(lengths[batch].max()) for batch in window.batches) for window in windows]
    return split_ranges([(window.first, window.stop) for window in windows], costs, world_size)
