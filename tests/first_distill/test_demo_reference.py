"""`first demo` prints its seed's figures beside the multi-seed reference measured for the committed recipe."""

from __future__ import annotations

from first_demo.config import WorldConfig
from first_demo.reference import load_reference, reference_lines


def test_reference_belongs_to_the_committed_recipe():
    # A recipe change without re-measuring (benchmarks/bench_fidelity.py --json) would print stale figures.
    reference = load_reference(WorldConfig().config_hash())
    assert reference is not None and reference["seeds"] == [0, 1, 2]
    assert load_reference("00000000") is None


def test_reference_lines_put_the_run_beside_the_mean():
    reference = {"seeds": [0, 1], "measured_by": "bench", "models": {
        "first": {"t": {"accuracy": [0.5, 0.1], "ece": [0.05, 0.01]}}, "ce": {"u": {"accuracy": [0.7, 0.0], "ece": [0.2, 0.0]}}}}
    metrics = {"models": {"first": {"tasks": {"t": {"accuracy": 0.625, "ece": 0.0625}}}}}
    lines = reference_lines(metrics, reference, seed=3)
    assert lines[0].startswith("seed 3 against the mean ± sd over seeds 0, 1")
    assert lines[1:] == ["first         t                      0.625 / 0.062   |   0.500±0.100 / 0.050±0.010"]
    assert "no multi-seed reference" in reference_lines(metrics, None, seed=0)[0]
