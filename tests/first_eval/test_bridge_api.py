"""The bridge's public API (``first_eval.lm_eval_bridge.__all__``), loaded lazily, and its task-YAML reader checked
against lm-eval's own loader."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import first_eval.lm_eval_bridge as bridge
from first_eval.errors import InputError
from first_eval.lm_eval_bridge import builtin_tasks_dir, read_task_yaml

# lm-eval task folders with include chains (mmlu's _default_template_yaml, arc_challenge -> arc_easy) and !function
# (truthfulqa's process_results, bbh's and mmlu_prox's filters and doc functions)
YAML_FOLDERS = ("arc", "truthfulqa", "hellaswag", "mmlu/default", "commonsense_qa", "piqa", "winogrande", "sciq",
                "bbh/zeroshot", "mmlu_prox/en")
INCLUDE_LINE = re.compile(r"^[\"']?include[\"']?:", re.MULTILINE)


def test_every_public_name_resolves_and_others_do_not():
    for name in bridge.__all__:
        assert getattr(bridge, name) is not None, name
    assert set(bridge.__all__) <= set(dir(bridge))
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        bridge.nothing_here  # noqa: B018


def test_importing_the_api_imports_neither_lm_eval_nor_torch():
    code = ("import sys; import first_eval.lm_eval_bridge as b, first_distill.training_data; "
            "from first_eval.lm_eval_bridge import render_task_split, encode_pairs, run_lm_eval; "
            "print(sorted(m for m in ('lm_eval', 'torch', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def _same_config(ours, lm_evals, where: str) -> None:
    """Equal, except that a ``!function spec`` (ours) is lm-eval's ``<folder of the declaring YAML>/spec``."""
    if isinstance(ours, str) and ours.startswith("!function "):
        spec = ours.removeprefix("!function ")
        assert isinstance(lm_evals, str) and Path(lm_evals).is_absolute() and lm_evals.endswith("/" + spec), where
    elif isinstance(ours, dict):
        assert isinstance(lm_evals, dict) and ours.keys() == lm_evals.keys(), where
        for key in ours:
            _same_config(ours[key], lm_evals[key], f"{where}.{key}")
    elif isinstance(ours, list):
        assert isinstance(lm_evals, list) and len(ours) == len(lm_evals), where
        for index, (a, b) in enumerate(zip(ours, lm_evals)):
            _same_config(a, b, f"{where}[{index}]")
    else:
        assert ours == lm_evals, where


def test_read_task_yaml_equals_lm_evals_loader():
    from lm_eval.tasks._yaml_loader import load_yaml

    paths = [path for folder in YAML_FOLDERS for path in sorted((builtin_tasks_dir() / folder).glob("*.yaml"))]
    assert len(paths) > 120
    n_functions = n_includes = 0
    for path in paths:
        ours = read_task_yaml(path)
        _same_config(ours, load_yaml(path, resolve_func=False), str(path))
        n_functions += "!function " in repr(ours)
        n_includes += bool(INCLUDE_LINE.search(path.read_text(encoding="utf-8")))
    assert n_functions > 40 and n_includes > 100  # both features really exercised


def test_read_task_yaml_refuses_an_include_cycle_in_one_line(tmp_path):
    (tmp_path / "a.yaml").write_text("include: b.yaml\ntask: a\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\ntask: b\n")
    with pytest.raises(InputError, match="'include:' cycle"):
        read_task_yaml(tmp_path / "a.yaml")


def test_read_task_yaml_reads_a_shared_include_twice(tmp_path):
    """Two includes that both include one base file are no cycle (lm-eval 0.4.13's loader reports one here)."""
    (tmp_path / "base.yaml").write_text("output_type: multiple_choice\n")
    (tmp_path / "left.yaml").write_text("include: base.yaml\ntest_split: test\n")
    (tmp_path / "right.yaml").write_text("include: base.yaml\nvalidation_split: validation\n")
    (tmp_path / "task.yaml").write_text("include: [left.yaml, right.yaml]\ntask: both\n")
    assert read_task_yaml(tmp_path / "task.yaml") == {
        "output_type": "multiple_choice", "test_split": "test", "validation_split": "validation", "task": "both"}
