"""Figures as SVG text for embedding in self-contained HTML (matplotlib Agg, imported lazily).

The SVG is kept small, since a comparison page holds dozens of figures: text stays text (``svg.fonttype``
``none``, not one path per glyph), the metadata block goes, coordinates keep one decimal (0.1 pt) and the
whitespace between tags goes. Ids are hashed from a fixed salt, so the same figure gives the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import re
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


COLOURS = ("#c0392b", "#2471a3", "#1e8449", "#7d3c98", "#b9770e", "#566573")
# One colour and marker per model on the comparison figures (the tab10 palette, then darker tints).
MODELCOLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
                 "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")
MODEL_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
_SVG_RC = {"svg.fonttype": "none", "svg.hashsalt": "first"}
_GEOMETRY = re.compile(r'( (?:d|x|y|x1|x2|y1|y2|width|height|points|transform)=")([^"]*)"')
_LONG_DECIMAL = re.compile(r"(\d\.\d)\d+")
_LONE_CHILD = re.compile(r"<g>(<(?:path|use)[^>]*/>|<text[^>]*>[^<]*</text>)</g>")


def model_style(index: int) -> dict:
    """Colour and marker of the ``index``-th model, the same on every comparison figure."""
    return {"color": MODELCOLOURS[index % len(MODELCOLOURS)], "marker": MODEL_MARKERS[index % len(MODEL_MARKERS)]}


def plain_label(text: str) -> str:
    """A name as matplotlib draws it literally: ``$`` is not mathtext, a leading ``_`` does not hide it, and a lone
    surrogate (an undecodable byte of a file name) is shown escaped (``\\udcff``) instead of failing the font."""
    text = str(text).encode("utf-8", "backslashreplace").decode("utf-8").replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def to_svg(figure) -> str:
    import matplotlib

    plt = pyplot()
    buffer = io.StringIO()
    with matplotlib.rc_context(_SVG_RC):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    svg = buffer.getvalue()
    return minify_svg(svg[svg.index("<svg") :])  # drop the XML prolog/doctype so it embeds inline in HTML


def minify_svg(svg: str) -> str:
    """Drop metadata, indentation, unreferenced ids, no-op rotations, font fallback lists and groups around one
    element; cut coordinates to one decimal (0.1 pt). Text content is left as it is."""
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = _GEOMETRY.sub(lambda m: m.group(1) + _LONG_DECIMAL.sub(r"\1", " ".join(m.group(2).split())) + '"', svg)
    svg = re.sub(r' transform="rotate\(-?0 [^)]*\)"', "", svg)
    svg = re.sub(r"font-family: [^;\"]*", "font-family: sans-serif", svg)
    referenced = set(re.findall(r'(?:url\(#|href="#)([^)"]+)', svg))
    svg = re.sub(r' id="([^"]*)"', lambda m: m.group(0) if m.group(1) in referenced else "", svg)
    svg = _styles_as_classes(re.sub(r">\s+<", "><", svg.strip()))
    while True:
        shorter = _LONE_CHILD.sub(r"\1", svg)
        if shorter == svg:
            return svg
        svg = shorter


def _styles_as_classes(svg: str) -> str:
    """Each long ``style="..."`` as a class defined once in the figure's own ``<style>``. The class is named by a hash
    of its declarations, so figures sharing a page (whose inline ``<style>`` rules apply page-wide) agree on it."""
    if ' class="' in svg or "<style" not in svg:
        return svg
    rules: dict[str, str] = {}

    def to_class(match: re.Match) -> str:
        name = "f" + hashlib.sha1(match.group(1).encode("utf-8")).hexdigest()[:7]
        rules[name] = match.group(1)
        return f' class="{name}"'

    svg = re.sub(r' style="([^"]{24,})"', to_class, svg)
    css = "".join(f".{name}{{{declarations}}}" for name, declarations in sorted(rules.items()))
    return svg.replace("</style>", css + "</style>", 1)


def reliability_diagram_svg(curves: Sequence[ReliabilityCurve], width_in: float = 4.2, height_in: float = 4.6) -> str:
    """Reliability diagram: accuracy per confidence bin against the diagonal, with bin counts.

    The first curve is drawn as bars with the gap to the diagonal shaded (red = over-confident,
    i.e. accuracy below confidence); further curves (e.g. after temperature scaling) are overlaid
    as lines with markers. A lower panel shows how many questions fall in each bin, per curve.
    """
    plt = pyplot()
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
        color="#aab7c4", edgecolor="#34495e", linewidth=0.6, label=plain_label(f"{first.label}: accuracy"),
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
            color=COLOURS[index % len(COLOURS)], label=plain_label(curve.label),
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
            color="#aab7c4" if index == 0 else COLOURS[index % len(COLOURS)], alpha=0.9,
        )
    bottom.set_yscale("symlog", linthresh=1)
    bottom.set_ylabel("questions")
    bottom.set_xlabel("confidence (probability of the chosen answer)")
    bottom.grid(alpha=0.25)
    return to_svg(figure)


def overlaid_reliability_svg(curves: Sequence[ReliabilityCurve], styles: Sequence[dict] | None = None,
                             width_in: float = 4.6, height_in: float = 4.8) -> str:
    """Every model's reliability curve on one pair of axes: per-bin accuracy against mean confidence (filled bins
    only) over the diagonal, and below it each model's questions per bin (log scale), in the model's colour."""
    plt = pyplot()
    styles = list(styles) if styles is not None else [model_style(i) for i in range(len(curves))]
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(width_in, height_in), sharex=True, gridspec_kw={"height_ratios": [3, 1.1], "hspace": 0.08}
    )
    top.plot([0, 1], [0, 1], color="#888888", linestyle="--", linewidth=1, label="perfect calibration")
    for curve, style in zip(curves, styles):
        filled = curve.counts > 0
        top.plot(curve.mean_confidence[filled], curve.accuracy[filled], linewidth=1.2, markersize=3.5,
                 label=plain_label(curve.label), **style)
        centers = (curve.edges[:-1] + curve.edges[1:]) / 2
        bottom.step(centers, curve.counts, where="mid", color=style["color"], linewidth=1.0, alpha=0.9)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left", fontsize=6.5, frameon=False, ncol=1 if len(curves) <= 6 else 2)
    top.grid(alpha=0.25)
    bottom.set_yscale("symlog", linthresh=1)
    bottom.set_ylim(bottom=0)
    bottom.set_ylabel("questions")
    bottom.set_xlabel("confidence (probability of the chosen answer)")
    bottom.grid(alpha=0.25)
    return to_svg(figure)


@dataclass(frozen=True)
class ModelPoint:
    """One model on one task for the headline figure: accuracy and ECE with their intervals (None: not known)."""

    model: str
    accuracy: float
    accuracy_ci: tuple[float | None, float | None]
    ece: float
    ece_ci: tuple[float | None, float | None]


def headline_svg(points: dict[str, Sequence[ModelPoint]], models: Sequence[str], baseline: str | None = None,
                 panel_in: tuple[float, float] = (2.55, 2.0), columns: int | None = None) -> str:
    """Per task a panel placing each model at (accuracy, ECE) with its interval as error bars; one legend.

    Better models sit low and to the right. The baseline is drawn with a black edge.
    """
    plt = pyplot()
    tasks = list(points)
    columns = columns or (2 if len(tasks) <= 4 else 3)
    columns = max(1, min(columns, len(tasks)))
    rows = -(-len(tasks) // columns)
    per_row = max(2, min(len(models), 2 * columns))  # legend entries per row
    legend_in = 0.17 * -(-len(models) // per_row) + 0.04  # the legend's height below the panels
    height_in = panel_in[1] * rows + legend_in
    figure, axes = plt.subplots(rows, columns, figsize=(panel_in[0] * columns, height_in), squeeze=False)
    styles = {model: model_style(i) for i, model in enumerate(models)}
    for axis, task in zip(axes.flat, tasks):
        for point in points[task]:
            style = styles[point.model]
            xerr = _error_bar(point.accuracy, point.accuracy_ci)
            yerr = _error_bar(point.ece, point.ece_ci)
            axis.errorbar(point.accuracy, point.ece, xerr=xerr, yerr=yerr, color=style["color"], marker=style["marker"],
                          markersize=5, linewidth=0.9, capsize=1.5,
                          markeredgecolor="black" if point.model == baseline else style["color"],
                          markeredgewidth=1.2 if point.model == baseline else 0.5)
        axis.set_title(plain_label(task), fontsize=9)
        axis.tick_params(labelsize=8)
        axis.grid(alpha=0.25)
        axis.set_ylim(bottom=0)
    for axis in axes.flat[len(tasks):]:
        axis.set_visible(False)
    for axis in axes[:, 0]:
        axis.set_ylabel("ECE (lower is better)", fontsize=8.5)
    for axis in axes[-1, :]:
        axis.set_xlabel("accuracy (higher is better)", fontsize=8.5)
    handles = [plt.Line2D([], [], linestyle="none", markersize=5, label=plain_label(model)
                          + (" (baseline)" if model == baseline else ""),
                          markeredgecolor="black" if model == baseline else styles[model]["color"],
                          **styles[model]) for model in models]
    figure.legend(handles=handles, loc="lower center", ncol=per_row, fontsize=8, frameon=False,
                  bbox_to_anchor=(0.5, 0.0), columnspacing=1.0, handletextpad=0.3)
    figure.tight_layout(rect=(0, legend_in / height_in, 1, 1), h_pad=0.6, w_pad=0.4)
    return to_svg(figure)


def _error_bar(value: float, interval: tuple[float | None, float | None]):
    """(2, 1) distances below and above ``value`` for matplotlib's errorbar, or None without an interval."""
    low, high = interval
    if low is None or high is None:
        return None
    return np.array([[max(value - low, 0.0)], [max(high - value, 0.0)]])
