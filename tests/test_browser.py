"""Reports render in a real headless Chromium: no console errors, visible diagrams, names never execute."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from first_eval.cli import app
from first_eval.synthetic import SyntheticTask

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE_TASK = "<script>window.__pwned_task=1</script>"
HOSTILE_MODEL = "<img src=x onerror=window.__pwned_model=1><script>window.__pwned_model=1</script>"
runner = CliRunner()


def open_page(html_path: Path, screenshot: Path) -> dict:
    sync_api = pytest.importorskip("playwright.sync_api")
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        problems: list[str] = []
        page.on("console", lambda message: problems.append(f"{message.type}: {message.text}") if message.type in ("error", "warning") else None)
        page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
        page.on("request", lambda request: problems.append(f"request: {request.url}") if not request.url.startswith(("file:", "data:", "about:")) else None)
        page.goto(html_path.as_uri())
        state = {
            "problems": problems,
            "svg_sizes": page.eval_on_selector_all("svg", "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; })"),
            "pwned": page.evaluate("() => [window.__pwned_task, window.__pwned_model].filter(x => x !== undefined)"),
            "text": page.inner_text("body"),
        }
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return state


def hostile_results_json(tmp_path: Path) -> Path:
    records = SyntheticTask("x", 200, (4,), sharpness=2.5).records(seed=0)
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"samples": {HOSTILE_TASK: records, "plain_task": records}}))
    return path


def test_report_renders_cleanly_and_escapes_a_hostile_task_name(tmp_path):
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", "--samples", str(hostile_results_json(tmp_path)), "--output", str(out), "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    state = open_page(out / "report.html", out / "screenshot.png")
    assert state["problems"] == []
    assert state["pwned"] == []
    assert HOSTILE_TASK in state["text"], "the hostile name must be shown as text"
    assert len(state["svg_sizes"]) >= 2 and all(w > 100 and h > 100 for w, h in state["svg_sizes"])
    assert (out / "screenshot.png").stat().st_size > 10_000


def test_comparison_escapes_a_hostile_model_name(tmp_path):
    samples = hostile_results_json(tmp_path)
    runs = []
    for name in ("a", "b"):
        runs.append(tmp_path / name)
        assert runner.invoke(app, ["report", "--samples", str(samples), "--output", str(runs[-1]), "--bootstrap", "0"]).exit_code == 0
    out = tmp_path / "compare"
    result = runner.invoke(app, ["compare", *map(str, runs), "--names", f"base,{HOSTILE_MODEL}", "--output", str(out)])
    assert result.exit_code == 0, result.output
    state = open_page(out / "report.html", out / "screenshot.png")
    assert state["problems"] == []
    assert state["pwned"] == []
    assert HOSTILE_MODEL in state["text"]
    assert len(state["svg_sizes"]) >= 4 and all(w > 100 and h > 100 for w, h in state["svg_sizes"])
