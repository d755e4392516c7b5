"""Hostile inputs to `first report --samples` and `first compare` (issue 10), through the real CLI in a subprocess.

Every refusal must be one line on stderr starting ``error:`` that names the file or flag and quotes the bad
value, exit code 2, no traceback and no output folder; the inputs that are odd but valid must give exit 0.
"""

from __future__ import annotations

import copy
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

import pytest

from first_demo.synthetic import SyntheticTask

TASK = SyntheticTask("hostile", 30, (4,), sharpness=1.0)
SAMPLES_NAME = "samples_hostile_2026-01-01T00-00-00.000000.jsonl"


def run_cli(*args: str, umask: int | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([sys.executable, "-m", "first_eval.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, preexec_fn=preexec)


def assert_refused(result: subprocess.CompletedProcess, output: Path, *needles: str) -> None:
    """Exit 2, exactly one stderr line ``error: ...`` holding every needle, no traceback, nothing written."""
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not output.exists(), f"{output} was written"


def records(**changes_by_index) -> list[dict]:
    """The synthetic task's 30 records (4 choices each), record ``i`` updated with ``changes_by_index[f"r{i}"]``."""
    rows = copy.deepcopy(TASK.records(seed=0))
    for key, changes in changes_by_index.items():
        rows[int(key[1:])].update(changes)
    return rows


def write_jsonl(directory: Path, rows: list, name: str = SAMPLES_NAME) -> Path:
    path = directory / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_text(directory: Path, text: str, name: str = SAMPLES_NAME) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def sparse_zeros(directory: Path) -> Path:
    """65 MiB of NUL bytes without a line break (sparse: costs no disk)."""
    path = directory / SAMPLES_NAME
    with path.open("wb") as stream:
        stream.truncate(65 * 2**20)
    return path


def binary_file(directory: Path) -> Path:
    path = directory / SAMPLES_NAME
    path.write_bytes(bytes(range(256)) * 8)
    return path


def all_duplicates(directory: Path) -> Path:
    rows = records()
    for row in rows:
        row["doc_id"] = 0
    return write_jsonl(directory, rows)


def some_duplicates(directory: Path) -> Path:
    rows = records()
    return write_jsonl(directory, rows + copy.deepcopy(rows[3:10]))


def deep_results_json(directory: Path) -> Path:
    return write_text(directory, '{"samples": {"t": ' + "[" * 100_000 + "]" * 100_000 + "}}", name="results.json")


def empty_folder(directory: Path) -> Path:
    folder = directory / "no_samples_here"
    folder.mkdir()
    (folder / "notes.txt").write_text("nothing\n")
    return folder


def loglik(*values) -> dict:
    return {"filtered_resps": [[value, "False"] for value in values]}


# (id, builder of the --samples path, extra flags, what the one-line error must contain)
REPORT_CASES: list[tuple[str, Callable[[Path], Path], tuple[str, ...], tuple[str, ...]]] = [
    ("doc_id-list", lambda d: write_jsonl(d, records(r2={"doc_id": [1, 2]})), (), ("line 3", "'doc_id' is [1, 2]")),
    ("doc_id-object", lambda d: write_jsonl(d, records(r2={"doc_id": {"a": 1}})), (), ("line 3", "'doc_id' is {'a': 1}")),
    ("doc_id-float", lambda d: write_jsonl(d, records(r4={"doc_id": 1.5})), (), ("line 5", "'doc_id' is 1.5")),
    ("doc_id-null", lambda d: write_jsonl(d, records(r0={"doc_id": None})), (), ("line 1", "'doc_id' is None")),
    ("doc_id-huge", lambda d: write_jsonl(d, records(r1={"doc_id": 10**30})), (), ("line 2", "10000000000", "64-bit")),
    ("duplicates-all", all_duplicates, (), ("29 record(s) repeat a doc_id", "doc_id 0 (line 2)")),
    ("duplicates-some", some_duplicates, (), ("7 record(s) repeat a doc_id", "doc_id 3 (line 31)")),
    ("filter-not-a-name", lambda d: write_jsonl(d, records(r0={"filter": ["x"]})), (), ("line 1", "'filter' is ['x']")),
    ("deep-nesting-jsonl", lambda d: write_text(d, "[" * 100_000 + "]" * 100_000 + "\n"), (), ("line 1", "nested too deeply")),
    ("deep-nesting-json", deep_results_json, (), ("results.json", "nested too deeply")),
    ("dev-zero", lambda d: Path("/dev/zero"), (), ("/dev/zero", "character device")),
    ("dev-null", lambda d: Path("/dev/null"), (), ("/dev/null", "character device")),
    ("line-without-break", sparse_zeros, (), ("line 1 is longer than 64 MiB",)),
    ("empty-file", lambda d: write_text(d, ""), (), ("the file is empty",)),
    ("blank-lines-only", lambda d: write_text(d, "\n  \n\t\n"), (), ("the file is empty",)),
    ("binary-file", binary_file, (), ("not a UTF-8 text file",)),
    ("folder-without-samples", empty_folder, (), ("no_samples_here", "no samples_*.jsonl")),
    ("nan-loglik", lambda d: write_jsonl(d, records(r1=loglik("NaN", "-1", "-2", "-3"))), (), ("line 2", "'NaN'", "finite")),
    ("loglik-beyond-float", lambda d: write_jsonl(d, records(r1=loglik(10**400, -1, -2, -3))), (), ("line 2", "finite")),
    ("loglik-not-a-number", lambda d: write_jsonl(d, records(r1=loglik({"a": 1}, None, "-2", "-3"))), (), ("line 2", "{'a': 1}")),
    ("filtered_resps-a-string", lambda d: write_jsonl(d, records(r1={"filtered_resps": "abc"})), (), ("line 2", "'abc'")),
    ("filtered_resps-an-object", lambda d: write_jsonl(d, records(r1={"filtered_resps": {"a": 1}})), (), ("line 2", "{'a': 1}")),
    ("filtered_resps-one-choice", lambda d: write_jsonl(d, records(r1=loglik("-1"))), (), ("line 2", "1 choice")),
    ("gold-float-string", lambda d: write_jsonl(d, records(r1={"target": "1.5"})), (), ("line 2", "'target' is '1.5'")),
    ("gold-long-digits", lambda d: write_jsonl(d, records(r1={"target": "9" * 5000})), (), ("line 2", "'target' is 999", "outside the 4 choices")),
    ("gold-object", lambda d: write_jsonl(d, records(r1={"target": {"a": 1}})), (), ("line 2", "'target' is {'a': 1}")),
    ("integer-too-long", lambda d: write_text(d, '{"doc_id": 0, "acc": ' + "1" * 5000 + "}\n" + json.dumps(records()[1]) + "\n"),
     (), ("line 1", "not valid JSON", "4300 digits")),
    ("truncated-line", lambda d: write_text(d, json.dumps(records()[0]) + "\n" + json.dumps(records()[1])[:50] + "\n"),
     (), ("line 2", "not valid JSON")),
    ("array-lines", lambda d: write_text(d, "[1, 2]\n[3]\n"), (), ("line 1", "expected a JSON object, got list")),
    ("json-list-document", lambda d: write_text(d, "[1, 2]", name="results.json"), (), ("results.json", "JSON list")),
    ("results-samples-not-a-mapping", lambda d: write_text(d, '{"samples": [1]}', name="results.json"), (), ("results.json", "'samples'")),
    ("seed-negative", lambda d: write_jsonl(d, records()), ("--seed", "-1"), ("--seed", "-1")),
    ("seed-too-large", lambda d: write_jsonl(d, records()), ("--seed", str(2**32)), ("--seed", str(2**32))),
    ("bins-huge", lambda d: write_jsonl(d, records()), ("--bins", str(10**12)), ("--bins", str(10**12))),
]


@pytest.mark.parametrize("builder, flags, needles", [case[1:] for case in REPORT_CASES], ids=[case[0] for case in REPORT_CASES])
def test_report_refuses_hostile_samples_in_one_line(tmp_path, builder, flags, needles):
    source = builder(tmp_path)
    output = tmp_path / "out"
    result = run_cli("report", "--samples", str(source), "--output", str(output), "--bootstrap", "0", *flags, timeout=60)
    assert_refused(result, output, *needles)
    if not str(source).startswith("/dev/") and not flags:
        assert str(source) in result.stderr  # the file is named


def extreme_question(value: float, spread: bool) -> list[dict]:
    """Question 3 scores its gold answer ``value`` (its other choices ordinary, or ``-value`` when ``spread``)."""
    rows = records()
    gold = int(rows[3]["target"])
    values = ["-1", "-2", "-3", "-4"]
    values[gold] = repr(value)
    if spread:
        values[(gold + 1) % 4] = repr(-value)
    rows[3].update(loglik(*values))
    return rows


@pytest.mark.parametrize("spread", [False, True], ids=["-1e308", "1e308-and--1e308"])
def test_extreme_log_likelihood_fits_and_says_the_temperature_is_at_its_bound(tmp_path, spread):
    source = write_jsonl(tmp_path, extreme_question(-1e308, spread))
    output = tmp_path / "out"
    result = run_cli("report", "--samples", str(source), "--output", str(output), "--bootstrap", "0")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr, result.stderr
    task = json.loads((output / "metrics.json").read_text())["tasks"]["hostile"]
    temperature = task["calibrated"]["temperature"]
    assert temperature["at_bound"] == "max" and temperature["temperature"] == 1e5
    assert any("search bound" in note and "doc_id 3" in note for note in task["notes"]), task["notes"]
    assert "(at search bound)" in (output / "report.html").read_text()
    calibrators = json.loads((output / "calibrators.json").read_text())
    assert calibrators["tasks"]["hostile"]["temperature"]["at_bound"] == "max"


def test_positive_1e308_choice_gives_a_finite_interior_fit(tmp_path):
    rows = records()
    rows[5].update(loglik("1e308", "-1e308", "-1", "-2"))
    rows[5]["target"] = "0"
    output = tmp_path / "out"
    result = run_cli("report", "--samples", str(write_jsonl(tmp_path, rows)), "--output", str(output), "--bootstrap", "0")
    assert result.returncode == 0, result.stderr
    temperature = json.loads((output / "metrics.json").read_text())["tasks"]["hostile"]["calibrated"]["temperature"]
    assert temperature["at_bound"] is None and 0.1 < temperature["temperature"] < 10


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_report_files_follow_the_umask(tmp_path, umask, mode):
    output = tmp_path / "out"
    result = run_cli("report", "--samples", str(write_jsonl(tmp_path, records())), "--output", str(output),
                     "--bootstrap", "0", umask=umask)
    assert result.returncode == 0, result.stderr
    for name in ("report.html", "metrics.json", "calibrators.json"):
        assert stat.S_IMODE((output / name).stat().st_mode) == mode, name
    assert not list(output.glob(".*.tmp"))


def test_the_same_doc_under_two_filters_is_not_a_duplicate(tmp_path):
    rows = records()
    other_filter = copy.deepcopy(rows)
    for row in other_filter:
        row["filter"] = "strict-match"
    output = tmp_path / "out"
    result = run_cli("report", "--samples", str(write_jsonl(tmp_path, rows + other_filter)), "--output", str(output),
                     "--bootstrap", "0")
    assert result.returncode == 0, result.stderr
    assert json.loads((output / "metrics.json").read_text())["tasks"]["hostile"]["n"] == 30


def test_many_choices_and_a_pipe_are_read(tmp_path):
    rows = records(r7={**loglik(*(f"-{1 + j / 7:.3f}" for j in range(3000))), "target": "5", "arguments": {}})
    text = "".join(json.dumps(row) + "\n" for row in rows)
    pipe = tmp_path / SAMPLES_NAME
    os.mkfifo(pipe)  # like `--samples <(zcat samples.jsonl.gz)`: not a regular file, read as a stream

    def feed() -> None:
        with pipe.open("w") as stream:
            stream.write(text)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    output = tmp_path / "out"
    result = run_cli("report", "--samples", str(pipe), "--output", str(output), "--bootstrap", "0")
    writer.join(timeout=5)
    assert result.returncode == 0, result.stderr
    assert json.loads((output / "metrics.json").read_text())["tasks"]["hostile"]["n_choices"] == {"4": 29, "3000": 1}


# ---------------------------------------------------------------- first compare


@pytest.fixture(scope="module")
def report_run(tmp_path_factory) -> Path:
    """A real `first report` folder to compare (and to corrupt copies of)."""
    folder = tmp_path_factory.mktemp("run")
    output = folder / "run"
    result = run_cli("report", "--samples", str(write_jsonl(folder, records())), "--output", str(output), "--bootstrap", "20")
    assert result.returncode == 0, result.stderr
    return output


def corrupted(report_run: Path, directory: Path, change: Callable[[dict], object]) -> Path:
    document = json.loads((report_run / "metrics.json").read_text())
    change(document)
    folder = directory / "bad_run"
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps(document))
    return folder


def task_field(field: str, value) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        metrics = document["tasks"]["hostile"]
        *parents, last = field.split(".")
        for parent in parents:
            metrics = metrics[parent]
        metrics[last] = value
    return change


def raw_metrics(text: str | bytes) -> Callable[[Path, Path], Path]:
    def build(report_run: Path, directory: Path) -> Path:
        folder = directory / "bad_run"
        folder.mkdir()
        (folder / "metrics.json").write_bytes(text.encode() if isinstance(text, str) else text)
        return folder
    return build


def with_change(change: Callable[[dict], object]) -> Callable[[Path, Path], Path]:
    return lambda report_run, directory: corrupted(report_run, directory, change)


def folder_without_metrics(report_run: Path, directory: Path) -> Path:
    folder = directory / "bad_run"
    folder.mkdir()
    return folder


# (id, builder of the bad run folder, what the one-line error must contain)
COMPARE_CASES: list[tuple[str, Callable[[Path, Path], Path], tuple[str, ...]]] = [
    ("accuracy-string", with_change(task_field("accuracy", "x")), ("task 'hostile'", "'accuracy' is 'x'")),
    ("accuracy-null", with_change(task_field("accuracy", None)), ("task 'hostile'", "'accuracy' is None")),
    ("accuracy-list", with_change(task_field("accuracy", [0.5])), ("task 'hostile'", "'accuracy' is [0.5]")),
    ("accuracy-infinite", raw_metrics('{"schema": "first.report/1", "tasks": {"hostile": {"n": 3, "accuracy": 1e999}}}'),
     ("task 'hostile'", "'accuracy' is inf")),
    ("ece-bool", with_change(task_field("ece", True)), ("'ece' is True",)),
    ("nll-string", with_change(task_field("nll", "0.5")), ("'nll' is '0.5'",)),
    ("auroc-object", with_change(task_field("auroc", {"v": 1})), ("'auroc' is {'v': 1}",)),
    ("n-negative", with_change(task_field("n", -4)), ("'n' is -4",)),
    ("ece_ci-string", with_change(task_field("ece_ci", "ab")), ("'ece_ci' is 'ab'",)),
    ("calibrated-list", with_change(task_field("calibrated", [1])), ("'calibrated' is [1]",)),
    ("fitted-T-string", with_change(task_field("calibrated.temperature.temperature", "hot")),
     ("'calibrated.temperature.temperature' is 'hot'",)),
    ("reliability-edges-strings", with_change(task_field("reliability.edges", ["a", "b"])), ("'reliability.edges' is ['a', 'b']",)),
    ("reliability-short-counts", with_change(task_field("reliability.counts", [1])), ("'reliability.counts' is [1]",)),
    ("task-not-an-object", with_change(lambda d: d["tasks"].update(hostile=3)), ("task 'hostile'", "is 3")),
    ("no-tasks", with_change(lambda d: d.update(tasks={})), ("'tasks' is {}",)),
    ("meta-list", with_change(lambda d: d.update(meta=[1])), ("'meta' is [1]",)),
    ("distill-metrics", with_change(lambda d: d.update(schema="first.distill/1")), ("'first.distill/1'", "first distill")),
    ("compare-metrics", with_change(lambda d: d.update(schema="first.compare/1")), ("'first.compare/1'",)),
    ("folder-without-metrics", folder_without_metrics, ("bad_run", "no metrics.json")),
    ("deeply-nested", raw_metrics("[" * 100_000 + "]" * 100_000), ("nested too deeply",)),
    ("not-json", raw_metrics("{oops"), ("not valid JSON",)),
    ("binary", raw_metrics(bytes(range(256))), ("not a UTF-8 text file",)),
    ("dev-zero", lambda report_run, directory: Path("/dev/zero"), ("/dev/zero", "not a regular file")),
]


@pytest.mark.parametrize("builder, needles", [case[1:] for case in COMPARE_CASES], ids=[case[0] for case in COMPARE_CASES])
def test_compare_refuses_a_bad_metrics_json_in_one_line(tmp_path, report_run, builder, needles):
    bad_run = builder(report_run, tmp_path)
    output = tmp_path / "cmp"
    result = run_cli("compare", str(report_run), str(bad_run), "--output", str(output), timeout=60)
    assert_refused(result, output, *needles)
    assert str(bad_run) in result.stderr  # the file is named


def test_compare_of_real_runs_succeeds_and_follows_the_umask(tmp_path, report_run):
    output = tmp_path / "cmp"
    result = run_cli("compare", str(report_run), str(report_run), "--output", str(output), umask=0o022)
    assert result.returncode == 0, result.stderr
    for name in ("report.html", "metrics.json"):
        assert stat.S_IMODE((output / name).stat().st_mode) == 0o644, name


def test_undecodable_names_are_shown_escaped(tmp_path, report_run):
    """A task name with a lone surrogate (JSON "\\ud800") and a --names byte that is not UTF-8 still render."""
    rows = records()
    for row in rows:
        row["task"] = "bad\ud800name"
    source = tmp_path / "named_by_its_records.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = tmp_path / "out"
    result = run_cli("report", "--samples", str(source), "--output", str(output), "--bootstrap", "0")
    assert result.returncode == 0, result.stderr
    assert "bad\\ud800name" in (output / "report.html").read_text()

    command = [sys.executable, "-m", "first_eval.cli", "compare", str(report_run), str(output),
               "--names", b"base,stu\xffdent", "--output", str(tmp_path / "cmp")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert "stu\\udcffdent" in (tmp_path / "cmp" / "report.html").read_text()


def test_an_error_found_while_auditing_is_one_line_too(tmp_path):
    output = tmp_path / "out"
    result = run_cli("report", "--samples", str(write_jsonl(tmp_path, records())), "--output", str(output),
                     "--bootstrap", "0", "--folds", "31")
    assert_refused(result, output, "--folds is 31")
