"""Figures as SVG text for embedding in self-contained HTML (matplotlib Agg, imported lazily)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class ReliabilityCurve:
    """One line on a reliability diagram: per-bin mean confidence and accuracy (equal-width bins)."""

    label: str
    edges: np.ndarray  # (M+1,)
    counts: np.ndarray  # (M,)
    mean_confidence: np.ndarray  # (M,) nan where empty
    accuracy: np.ndarray  # (M,) nan where empty


_COLOURS = ("#c0392b", "#2471a3", "#1e8449", "#7d3c98", "#b9770e", "#566573")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _to_svg(figure) -> str:
    plt = _pyplot()
    buffer = io.StringIO()
    # metadata Date=None keeps the SVG byte-identical between runs.
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]  # drop the XML prolog/doctype so it embeds inline in HTML


def reliability_diagram_svg(curves: Sequence[ReliabilityCurve], width_in: float = 4.2, height_in: float = 4.6) -> str:
    """Reliability diagram: accuracy per confidence bin against the diagonal, with bin counts.

    The first curve is drawn as bars with the gap to the diagonal shaded (red = over-confident,
    i.e. accuracy below confidence); further curves (e.g. after temperature scaling) are overlaid
    as lines with markers. A lower panel shows how many questions fall in each bin, per curve.
    """
    plt = _pyplot()
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(width_in, height_in), sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.08}
    )
    top.plot([0, 1], [0, 1], color="#888888", linestyle="--", linewidth=1, label="perfect calibration")
    first = curves[0]
    centers = (first.edges[:-1] + first.edges[1:]) / 2
    widths = np.diff(first.edges)
    filled = first.counts > 0
    top.bar(
        centers[filled], first.accuracy[filled], width=widths[filled] * 0.92,
        color="#aab7c4", edgecolor="#34495e", linewidth=0.6, label=f"{first.label}: accuracy",
    )
    # Shade the gap between each bin's accuracy and its mean confidence.
    for c, w, acc, conf in zip(centers[filled], widths[filled], first.accuracy[filled], first.mean_confidence[filled]):
        colour = "#e74c3c" if conf > acc else "#27ae60"
        top.bar(c, conf - acc, bottom=acc, width=w * 0.92, color=colour, alpha=0.35, linewidth=0)
    top.plot([], [], color="#e74c3c", alpha=0.5, linewidth=6, label="gap (over-confident)")
    for index, curve in enumerate(curves[1:], start=1):
        mask = curve.counts > 0
        top.plot(
            curve.mean_confidence[mask], curve.accuracy[mask], marker="o", markersize=3.5, linewidth=1.4,
            color=_COLOURS[index % len(_COLOURS)], label=curve.label,
        )
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left", fontsize=7, frameon=False)
    top.grid(alpha=0.25)

    n_curves = len(curves)
    for index, curve in enumerate(curves):
        offset = (index - (n_curves - 1) / 2) * widths / max(n_curves, 1)
        bottom.bar(
            centers + offset, curve.counts, width=widths * 0.9 / n_curves,
            color="#aab7c4" if index == 0 else _COLOURS[index % len(_COLOURS)], alpha=0.9,
        )
    bottom.set_yscale("symlog", linthresh=1)
    bottom.set_ylabel("questions")
    bottom.set_xlabel("confidence (probability of the chosen answer)")
    bottom.grid(alpha=0.25)
    return _to_svg(figure)


def training_curves_svg(series: dict[str, Sequence[tuple[float, float]]], ylabel: str = "loss", xlabel: str = "step",
                        width_in: float = 5.5, height_in: float = 3.2) -> str:
    """Line plot of named (x, y) series, e.g. training loss per variant."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(width_in, height_in))
    for index, (name, points) in enumerate(series.items()):
        if not points:
            continue
        xs, ys = zip(*points)
        axis.plot(xs, ys, label=name, color=_COLOURS[index % len(_COLOURS)], linewidth=1.3)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.25)
    axis.legend(fontsize=7, frameon=False)
    return _to_svg(figure)
