import json

import pytest
from typer.testing import CliRunner

from first_eval.cli import app
from first_demo.synthetic import SyntheticTask, write_samples_file

runner = CliRunner()


@pytest.fixture()
def two_runs(tmp_path):
    runs = []
    for name, sharpness in (("calibrated", 1.0), ("overconfident", 3.0)):
        samples = write_samples_file(SyntheticTask("shared_task", 600, (4,), sharpness=sharpness), tmp_path / f"s_{name}", seed=2)
        runs.append(tmp_path / name)
        assert runner.invoke(app, ["report", "--samples", str(samples), "--output", str(runs[-1]), "--bootstrap", "100"]).exit_code == 0
    return runs


def test_compare_table_and_deltas_against_the_baseline(two_runs, tmp_path):
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", *map(str, two_runs), "--output", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    document = json.loads((out / "metrics.json").read_text())
    assert document["schema"] == "first.compare/2"
    assert document["baseline"] == "calibrated"
    base = document["models"]["calibrated"]["tasks"]["shared_task"]
    other = document["models"]["overconfident"]["tasks"]["shared_task"]
    delta = document["deltas"]["overconfident"]["shared_task"]
    # same questions: paired on all 600, and the plain ECE difference is the difference of the table's ECEs
    assert document["pairing"]["overconfident"]["shared_task"] == {"paired": True, "n": 600, "note": ""}
    assert delta["ece"]["delta_plugin"] == pytest.approx(other["ece"] - base["ece"], abs=1e-12)
    assert delta["brier"]["delta"] == pytest.approx(other["brier"] - base["brier"], abs=1e-12)
    assert delta["ece"]["delta"] > 0.1 and delta["ece"]["excludes_zero"]  # the 3x sharpened copy is far worse calibrated
    assert delta["ece"]["ci"][0] > 0.05
    assert delta["accuracy"] == {"delta": 0.0, "ci": [0.0, 0.0], "paired": True, "n": 600, "excludes_zero": False}
    html = (out / "report.html").read_text()
    assert "Change against calibrated" in html and 'class="task decision"' in html
    # the headline figure, one overlaid reliability figure for the task, and the two per-model diagrams (folded)
    assert html.count("<svg") == 4 and html.count("<details>") == 1


def test_compare_errors(two_runs, tmp_path):
    result = runner.invoke(app, ["compare", str(two_runs[0]), str(tmp_path / "missing"), "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no metrics.json" in result.stderr
    result = runner.invoke(app, ["compare", *map(str, two_runs), "--baseline", "overconfidnt", "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "Did you mean 'overconfident'" in result.stderr
    result = runner.invoke(app, ["compare", *map(str, two_runs), "--names", "only_one", "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--names has 1 name(s) for 2 run folder(s)" in result.stderr
    assert not (tmp_path / "o").exists()
