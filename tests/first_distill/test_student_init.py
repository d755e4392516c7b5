"""`first distill init-student`: the cut model computes exactly the teacher's head on its layer-N state."""

from __future__ import annotations

import json

import pytest
import torch
import typer
from typer.testing import CliRunner

from first_distill.cli import register
from first_distill.student_init import truncated_student
from first_eval.errors import InputError
from tiny_models import tiny_llama_dir  # noqa: F401  (session fixture, 2 decoder layers)


def test_cut_student_equals_the_teachers_head_on_its_first_layers(tiny_llama_dir, tmp_path):  # noqa: F811
    from transformers import AutoModelForCausalLM, AutoTokenizer

    student_dir = truncated_student(tiny_llama_dir, 1, tmp_path / "student")
    teacher = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    student = AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32).eval()
    assert student.config.num_hidden_layers == 1 and len(student.model.layers) == 1
    ids = AutoTokenizer.from_pretrained(student_dir)("Question: why is the sky blue?\nAnswer: light")["input_ids"]
    ids = torch.tensor([ids])
    with torch.inference_mode():
        states = teacher(input_ids=ids, output_hidden_states=True).hidden_states  # [i]: input of layer i
        expected = teacher.lm_head(teacher.model.norm(states[1]))
        torch.testing.assert_close(student(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-5)
    assert json.loads((student_dir / "config.json").read_text())["num_hidden_layers"] == 1
    assert not list(tmp_path.glob(".*partial"))


def test_bad_layer_counts_and_outputs(tiny_llama_dir, tmp_path):  # noqa: F811
    with pytest.raises(InputError, match="has 2 decoder layers"):
        truncated_student(tiny_llama_dir, 2, tmp_path / "a")
    with pytest.raises(InputError, match=">= 1"):
        truncated_student(tiny_llama_dir, 0, tmp_path / "b")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("x")
    with pytest.raises(InputError, match="not an empty folder"):
        truncated_student(tiny_llama_dir, 1, tmp_path / "c")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli(tiny_llama_dir, tmp_path):  # noqa: F811
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("noop")(lambda: None)
    register(app)
    result = CliRunner().invoke(app, ["distill", "init-student", "--from", str(tiny_llama_dir), "--layers", "1",
                                      "--output", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s" / "config.json").is_file()
    result = CliRunner().invoke(app, ["distill", "init-student", "--from", str(tmp_path / "nope"), "--layers", "1",
                                      "--output", str(tmp_path / "t")])
    assert result.exit_code == 2 and result.output.startswith("error: ") and len(result.output.splitlines()) == 1
