"""A training pair without a completion token is refused before the teacher is loaded or a file is written
(it used to crash the shard writer and leave a ``.tmp`` shard behind)."""

from __future__ import annotations

import json

import pytest

from first_distill.teacher import extract as extract_module
from first_distill.teacher.extract import ExtractConfig, extract_knowledge
from first_distill.training_data import TrainingExample, TrainingSet
from first_eval.errors import InputError
from tiny_models import tiny_llama_dir  # noqa: F401  (session fixture)

GOOD = {"prompt": "Question: Is the sky blue?\nAnswer:", "completion": " yes"}


class LoadedAnyway(Exception):
    """The teacher (or the temperature audit) was reached: the refusal came too late."""


@pytest.fixture()
def nothing_loads(monkeypatch):
    def fail(*args, **kwargs):
        raise LoadedAnyway

    monkeypatch.setattr(extract_module, "load_teacher", fail)
    monkeypatch.setattr(extract_module, "_teacher_temperature", fail)


def write_rows(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows), encoding="utf-8")
    return path


def run(tiny_llama_dir, output, **settings):  # noqa: F811
    return extract_knowledge(ExtractConfig(teacher=tiny_llama_dir, output=output, teacher_temperature=1.0,
                                           progress=False, device="cpu", **settings))


@pytest.mark.parametrize("bad, problem", [
    ({"prompt": "Water freezes at", "completion": ""}, "completion is empty; every pair needs at least one completion token"),
    ({"prompt": "Wat", "completion": "er"}, "completion 'er' gives no token of its own (the tokenizer merges it into "
                                             "the prompt's last token); every pair needs at least one completion token"),
])
def test_a_pair_without_completion_tokens_is_refused_with_file_and_line(bad, problem, tmp_path, tiny_llama_dir,  # noqa: F811
                                                                         nothing_loads):
    train = write_rows(tmp_path / "train.jsonl", [GOOD, "", GOOD, bad, GOOD])
    output = tmp_path / "store"
    with pytest.raises(InputError) as caught:
        run(tiny_llama_dir, output, train=train)
    where = train if bad["completion"] == "" else train.resolve()  # the reader names the path as given
    assert str(caught.value) == f"--train {where}:4: {problem}"
    assert not output.exists()  # no folder, no temporary shard


def test_the_check_covers_the_pairs_a_limit_keeps(tmp_path, tiny_llama_dir, nothing_loads):  # noqa: F811
    train = write_rows(tmp_path / "train.jsonl", [GOOD, GOOD, {"prompt": "Wat", "completion": "er"}])
    with pytest.raises(LoadedAnyway):  # --limit 2 leaves the merged pair out: on to the teacher
        run(tiny_llama_dir, tmp_path / "store", train=train, train_limit=2)


def test_a_task_split_with_an_empty_completion_is_refused(tmp_path, tiny_llama_dir, monkeypatch, nothing_loads):  # noqa: F811
    split = TrainingSet((TrainingExample("Question: ok?\nAnswer:", " yes"), TrainingExample("Question: blank?\nAnswer:", "")),
                        {"kind": "lm-eval task", "task": "arc_blank", "split": "train"})
    monkeypatch.setattr(extract_module, "task_training_set", lambda *args, **kwargs: split)
    output = tmp_path / "store"
    with pytest.raises(InputError, match=r"^--train-task arc_blank: training example 1 \(prompt 'Question: blank\?\\nAnswer:'\): "
                                         r"completion is empty; every pair needs at least one completion token$"):
        run(tiny_llama_dir, output, train_task="arc_blank")
    assert not output.exists()


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), "60", True])
def test_bad_shard_seconds_is_refused(value, tmp_path, tiny_llama_dir):  # noqa: F811
    with pytest.raises(InputError, match=r"^shard_seconds .*: must be a number > 0"):
        run(tiny_llama_dir, tmp_path / "store", train=write_rows(tmp_path / "train.jsonl", [GOOD]), shard_seconds=value)
