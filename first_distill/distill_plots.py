"""The distill report's own figure: training curves (loss per step, one line per variant), drawn with first_eval's
plotting helpers so it matches the audit figures."""

from __future__ import annotations

from typing import Sequence

from first_eval.plots import COLOURS, pyplot, to_svg


def training_curves_svg(series: dict[str, Sequence[tuple[float, float]]], ylabel: str = "loss", xlabel: str = "step",
                        width_in: float = 5.5, height_in: float = 3.2) -> str:
    """Line plot of named (x, y) series, e.g. training loss per variant."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(width_in, height_in))
    for index, (name, points) in enumerate(series.items()):
        if not points:
            continue
        xs, ys = zip(*points)
        # Past the palette, colours repeat with a dashed line so no two series look alike.
        axis.plot(xs, ys, label=name, color=COLOURS[index % len(COLOURS)], linewidth=1.3,
                  linestyle="-" if index < len(COLOURS) else "--")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.25)
    axis.legend(fontsize=7, frameon=False)
    return to_svg(figure)
