import json

import pytest
from typer.testing import CliRunner

from first_eval.cli import app
from first_eval.synthetic import SyntheticTask, write_samples_file

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
    assert document["schema"] == "first.compare/1"
    assert document["baseline"] == "calibrated"
    base = document["models"]["calibrated"]["tasks"]["shared_task"]
    other = document["models"]["overconfident"]["tasks"]["shared_task"]
    delta = document["deltas"]["overconfident"]["shared_task"]
    assert delta["ece"] == pytest.approx(other["ece"] - base["ece"])
    assert delta["ece"] > 0.1  # the 3x sharpened copy is far worse calibrated
    assert delta["accuracy"] == pytest.approx(0.0)  # same latent questions, sharpening keeps the argmax
    html = (out / "report.html").read_text()
    assert html.count("<svg") == 2 and "Change against calibrated" in html


def test_compare_errors(two_runs, tmp_path):
    result = runner.invoke(app, ["compare", str(two_runs[0]), str(tmp_path / "missing"), "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no metrics.json" in result.stderr
    result = runner.invoke(app, ["compare", *map(str, two_runs), "--baseline", "overconfidnt", "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "Did you mean 'overconfident'" in result.stderr
    result = runner.invoke(app, ["compare", *map(str, two_runs), "--names", "only_one", "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--names has 1 name(s) for 2 run folder(s)" in result.stderr
    assert not (tmp_path / "o").exists()
