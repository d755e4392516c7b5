"""Reports render in a real headless Chromium: no console errors, visible diagrams, names never execute."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from first_eval.cli import app
from first_demo.synthetic import SyntheticTask
from missing_tools import skip_missing_tool

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE_TASK = "<script>window.__pwned_task=1</script>"
HOSTILE_MODEL = "<img src=x onerror=window.__pwned_model=1><script>window.__pwned_model=1</script>"
runner = CliRunner()


def open_page(html_path: Path, screenshot: Path) -> dict:
    if importlib.util.find_spec("playwright") is None:
        skip_missing_tool("playwright, to drive Chromium (pip install -e '.[test]')")
    if CHROMIUM is None:
        skip_missing_tool("Chromium (apt-get install -y chromium)")
    from playwright import sync_api
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
            # shown without opening anything (the per-model diagrams of a comparison are folded in <details>)
            "svg_shown": page.eval_on_selector_all("svg", "els => els.filter(e => e.checkVisibility()).map(e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; })"),
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
    # shown: the headline figure and one overlaid diagram per task (2 tasks); folded: 2 x 2 per-model diagrams
    shown = state["svg_shown"]
    assert len(state["svg_sizes"]) == 7 and len(shown) == 3 and all(w > 100 and h > 100 for w, h in shown)


def first_screen(html_path: Path, screenshot: Path, selectors: tuple[str, ...]) -> dict:
    """Open the page in a 1400x900 window; the bounding box of each selector's element, and a screenshot of what
    shows without scrolling."""
    if importlib.util.find_spec("playwright") is None:
        skip_missing_tool("playwright, to drive Chromium (pip install -e '.[test]')")
    if CHROMIUM is None:
        skip_missing_tool("Chromium (apt-get install -y chromium)")
    from playwright import sync_api
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(html_path.as_uri())
        boxes = {selector: page.eval_on_selector(selector, "e => { const r = e.getBoundingClientRect(); "
                                                           "return {x: r.x, y: r.y, right: r.right, bottom: r.bottom}; }")
                 for selector in selectors}
        page.screenshot(path=str(screenshot))  # the first screen only
        browser.close()
    return boxes


def test_the_decision_table_and_headline_figure_fit_the_first_screen(tmp_path):
    """A distill page the size of the demo's (12 models x 4 tasks): the pivoted table and the headline figure are
    both whole within 1400 x 900 without scrolling; the page is one file under 1 MB."""
    from comparison_fixtures import demo_sized_page

    page = demo_sized_page()
    assert page.stat().st_size < 1_000_000
    screenshot = Path(page).parent / "first-screen.png"  # kept beside the page to look at
    boxes = first_screen(page, screenshot, ("table.pivot", ".figure.headline svg"))
    for selector in ("table.pivot", ".figure.headline svg"):
        box = boxes[selector]
        assert 0 <= box["x"] and box["right"] <= 1400 and 0 <= box["y"] and box["bottom"] <= 900, (selector, box)
    assert boxes["table.pivot"]["right"] <= boxes[".figure.headline svg"]["x"]  # side by side
    assert screenshot.stat().st_size > 20_000
