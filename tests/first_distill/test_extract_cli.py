"""`first distill extract`: bad input is one line, exit code 2, and leaves nothing behind; good input writes a store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from first_distill.cli import register
from first_distill.store import KnowledgeStore
from first_distill.teacher.extract import ExtractConfig, extract_knowledge
from first_eval.errors import InputError
from tiny_models import make_tiny_llama, tiny_llama_dir  # noqa: F401  (session fixture)

# The random tiny teacher is nearly flat: 8-bit codes round most of its probabilities to 0 (warned once, below).
pytestmark = pytest.mark.filterwarnings("ignore:the tempered teacher is flat")


@pytest.fixture(scope="module")
def app():
    first = typer.Typer(pretty_exceptions_enable=False)
    first.command("noop")(lambda: None)  # a second top-level command keeps `distill` a sub-command
    register(first)
    return first


@pytest.fixture()
def train_file(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Question: {i}?\nAnswer:", "completion": f" yes {i}"}) + "\n"
                            for i in range(6)))
    return path


def invoke(app, *args):
    return CliRunner().invoke(app, ["distill", "extract", *map(str, args)])


def test_cli_writes_a_store_and_reports_it(app, tmp_path, tiny_llama_dir, train_file):  # noqa: F811
    result = invoke(app, "--teacher", tiny_llama_dir, "--train", train_file, "--output", tmp_path / "k",
                    "--top-k", 3, "--teacher-temperature", "1.7", "--batch-size", 4, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "T = 1.7 [fixed]" in result.output and "6 sequences" in result.output
    store = KnowledgeStore.open(tmp_path / "k")
    assert (store.k, store.temperature, store.n_sequences) == (3, 1.7, 6)


def test_cli_sample_selection(app, tmp_path, tiny_llama_dir, train_file):  # noqa: F811
    result = invoke(app, "--teacher", tiny_llama_dir, "--train", train_file, "--output", tmp_path / "k",
                    "--selection", "sample", "--samples-per-position", 6, "--teacher-temperature", "none", "--seed", 1)
    assert result.exit_code == 0, result.output
    assert "mean teacher mass of the sampled ids" in result.output
    store = KnowledgeStore.open(tmp_path / "k")
    assert (store.selection, store.k, store.manifest.identity.samples_per_position) == ("sample", 6, 6)


def test_cli_calibrators_from(app, tmp_path, tiny_llama_dir, train_file):  # noqa: F811
    report = tmp_path / "report"
    report.mkdir()
    (report / "calibrators.json").write_text(json.dumps({"tasks": {"arc_easy": {"temperature": {"temperature": 1.25}}}}))
    result = invoke(app, "--teacher", tiny_llama_dir, "--train", train_file, "--output", tmp_path / "k",
                    "--calibrators-from", report / "calibrators.json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    identity = KnowledgeStore.open(tmp_path / "k").manifest.identity
    assert identity.temperature == 1.25 and identity.extra["teacher_temperature"]["source"] == "calibrators"
    assert identity.temperature_source.startswith("calibrators: ")


@pytest.fixture(scope="module")
def other_vocab_dir(tmp_path_factory):
    return make_tiny_llama(tmp_path_factory.mktemp("student") / "model", vocab_size=400)


BAD_INPUTS = {
    "student vocabulary": (["--student", "{other}"], r"vocabularies differ: teacher 512 tokens, student 400 tokens"),
    "k above vocabulary": (["--top-k", "100000"], r"--top-k 100000: exceeds the teacher's vocabulary of 512 tokens"),
    "teacher not a model": (["--teacher", "{empty}"], r"--teacher .*: not a model folder \(no config\.json\)"),
    "row without completion": (["--train", "{bad_row}"], r"bad\.jsonl:2: row has no 'completion'"),
    "empty training set": (["--train", "{empty_file}"], r"empty training set"),
    "both training sources": (["--train-task", "arc_easy"], r"exactly one of --train FILE\.jsonl or --train-task"),
    "sample without draws": (["--selection", "sample"], r"--selection sample needs --samples-per-position"),
    "bad selection": (["--selection", "best"], r"--selection 'best': must be one of topk, sample"),
    "bad temperature": (["--teacher-temperature", "-2"], r"--teacher-temperature '-2': must be a finite number > 0"),
    "auto without a task": (["--teacher-temperature", "auto"], r"auto needs a task"),
    "max length": (["--max-length", "1"], r"--max-length 1: must be a whole number >= 2"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, app, tmp_path, tiny_llama_dir, train_file, other_vocab_dir):  # noqa: F811
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "c"}\n')
    (tmp_path / "empty.jsonl").write_text("\n")
    flags, message = BAD_INPUTS[case]
    places = {"other": other_vocab_dir, "empty": tmp_path / "empty", "bad_row": tmp_path / "bad.jsonl",
              "empty_file": tmp_path / "empty.jsonl"}
    flags = [flag.format(**places) for flag in flags]
    base = {"--teacher": tiny_llama_dir, "--train": train_file, "--output": tmp_path / "out",
            "--teacher-temperature": "none", "--device": "cpu"}
    for flag in flags[::2]:
        base.pop(flag, None)
    args = [item for pair in base.items() for item in pair] + flags
    result = invoke(app, *args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and re.search(message, lines[0]), result.output
    assert not (tmp_path / "out").exists()


def test_an_existing_file_as_output(tmp_path, tiny_llama_dir, train_file):  # noqa: F811
    (tmp_path / "out").write_text("x")
    with pytest.raises(InputError, match=r"--output .*: is a file"):
        extract_knowledge(ExtractConfig(teacher=tiny_llama_dir, output=tmp_path / "out", train=train_file,
                                        teacher_temperature="none", progress=False))


def test_gguf_hint_for_a_folder_without_config(tmp_path, train_file):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.Q4.gguf").write_bytes(b"GGUF")
    with pytest.raises(InputError, match=r"for a GGUF model pass --teacher .*model\.Q4\.gguf"):
        extract_knowledge(ExtractConfig(teacher=tmp_path / "m", output=tmp_path / "out", train=train_file,
                                        teacher_temperature="none", progress=False))
    assert not Path(tmp_path / "out").exists()


@pytest.fixture(scope="module")
def other_tokenizer_dir(tmp_path_factory):
    from tiny_models import default_corpus

    return make_tiny_llama(tmp_path_factory.mktemp("other-tokenizer") / "model", corpus=default_corpus()[:300])


def test_same_vocabulary_size_but_another_tokenizer(tmp_path, tiny_llama_dir, other_tokenizer_dir, train_file):  # noqa: F811
    from transformers import AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(str(other_tokenizer_dir))) == 512
    with pytest.raises(InputError, match=r"tokenizers differ: teacher sha256 \w+…, student \w+…"):
        extract_knowledge(ExtractConfig(teacher=tiny_llama_dir, output=tmp_path / "out", train=train_file,
                                        student=other_tokenizer_dir, teacher_temperature="none", progress=False))
    assert not (tmp_path / "out").exists()


def test_cli_train_task_auto_temperature_at_the_bound_is_refused(app, tmp_path, tiny_llama_dir):  # noqa: F811
    """The task's own prompts, T from `auto` (lm-eval on validation). Every validation gold answer is built to be
    ranked last by the random tiny teacher (length_ranked_arc.py), so T runs to the search bound: auto refuses with
    one line and leaves nothing; a fixed T then writes the store from the task's train split."""
    from length_ranked_arc import write_length_ranked_arc

    data_dir = write_length_ranked_arc(tmp_path / "data", n_right=0, n_wrong=12)
    common = ["--teacher", tiny_llama_dir, "--train-task", "arc_easy", "--data-dir", data_dir, "--limit", 5,
              "--output", tmp_path / "k", "--device", "cpu", "--top-k", 2]
    refused = invoke(app, *common, "--calibration-limit", 12)
    assert refused.exit_code == 2, refused.output
    lines = [line for line in refused.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "search bound" in lines[0] and "on 12 questions" in lines[0], refused.output
    assert not (tmp_path / "k").exists()
    result = invoke(app, *common, "--teacher-temperature", "1.1")
    assert result.exit_code == 0, result.output
    store = KnowledgeStore.open(tmp_path / "k")
    assert store.temperature == 1.1 and store.manifest.identity.extra["teacher_temperature"]["source"] == "fixed"
    training = store.manifest.identity.extra["training_data"]
    assert (training["kind"], training["task"], training["split"], training["n_examples"]) == ("lm-eval task", "arc_easy", "train", 5)
    assert store.n_sequences == 5


def test_cli_train_task_auto_temperature_records_its_provenance(app, tmp_path, tiny_llama_dir):  # noqa: F811
    """9 of 12 validation gold answers ranked first, 3 last (length_ranked_arc.py): an interior T, stored with
    where it came from."""
    from length_ranked_arc import write_length_ranked_arc

    data_dir = write_length_ranked_arc(tmp_path / "data", n_right=9, n_wrong=3)
    result = invoke(app, "--teacher", tiny_llama_dir, "--train-task", "arc_easy", "--data-dir", data_dir, "--limit", 5,
                    "--output", tmp_path / "k", "--device", "cpu", "--top-k", 2, "--calibration-limit", 12)
    assert result.exit_code == 0, result.output
    store = KnowledgeStore.open(tmp_path / "k")
    recorded = store.manifest.identity.extra["teacher_temperature"]
    assert recorded["source"] == "auto" and recorded["task"] == "arc_easy"
    details = recorded["details"]
    assert details["n_questions"] == 12 and details["split"] == "validation" and details["limit"] == 12
    assert details["accuracy"] == pytest.approx(9 / 12, abs=1e-12)
    assert store.temperature == recorded["value"] and 1.0 < recorded["value"] < 1e4
    assert recorded["ece_after"] is not None and recorded["ece_before"] is not None
    assert store.manifest.identity.temperature_source == "auto: TemperatureScaling on lm-eval arc_easy validation (12 questions)"
    assert store.n_sequences == 5
