"""The distill report's training curves: every series drawn, none looking like another."""

from first_distill.distill_plots import training_curves_svg
from first_eval.plots import COLOURS


def test_series_past_the_palette_are_dashed():
    series = {f"variant-{i}": [(0, float(i)), (1, i + 0.5)] for i in range(len(COLOURS) + 1)}
    svg = training_curves_svg(series, ylabel="training loss")
    assert all(name in svg for name in series) and "training loss" in svg
    assert "dasharray" in svg
    assert "dasharray" not in training_curves_svg(dict(list(series.items())[:len(COLOURS)]))
