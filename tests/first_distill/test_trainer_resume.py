"""Reproducibility and crash safety of ``train_student``: a fixed seed gives the same student twice, a run
killed mid-way and resumed ends with the student of an uninterrupted run, a resume with other settings is
refused, and a full disk while saving leaves no half-written checkpoint or model behind."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from first_distill.train import train_student
from first_eval.errors import InputError
from test_trainer import config_for, state_dict, world  # noqa: F401  (world: session fixture)
from tiny_models import tiny_llama_dir  # noqa: F401  (session fixture)


class Killed(Exception):
    """Stands in for SIGKILL: raised inside the training loop, nothing after it runs."""


def assert_same_weights(a: Path, b: Path) -> None:
    import torch

    first, second = state_dict(a), state_dict(b)
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def checkpoint_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_a_fixed_seed_gives_the_same_student_twice(world, tmp_path):  # noqa: F811
    one = train_student(config_for(world, tmp_path / "one", variants=("first",), max_steps=4))
    two = train_student(config_for(world, tmp_path / "two", variants=("first",), max_steps=4))
    assert_same_weights(one.students[0].model_dir, two.students[0].model_dir)
    other = train_student(config_for(world, tmp_path / "other", variants=("first",), max_steps=4, seed=1))
    with pytest.raises(AssertionError):  # another seed, another data order
        assert_same_weights(one.students[0].model_dir, other.students[0].model_dir)


def test_a_killed_run_resumes_to_the_uninterrupted_student(world, tmp_path, monkeypatch):  # noqa: F811
    from first_distill.trainer import DistillationTrainer

    settings = dict(variants=("first", "ce"), max_steps=6, save_steps=2, lr_scheduler="linear")
    reference = train_student(config_for(world, tmp_path / "reference", **settings))

    original_step = DistillationTrainer.training_step

    def dies_after_step_3(self, *args, **kwargs):
        if self.variant.name == "ce" and self.state.global_step == 3:
            raise Killed
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(DistillationTrainer, "training_step", dies_after_step_3)
    output = tmp_path / "run"
    with pytest.raises(Killed):
        train_student(config_for(world, output, **settings))
    assert (output / "first" / "model").is_dir() and not (output / "ce" / "model").exists()
    assert checkpoint_names(output / "ce" / "checkpoints") == ["checkpoint-2"]
    monkeypatch.setattr(DistillationTrainer, "training_step", original_step)

    with pytest.raises(InputError, match="already holds a training run"):  # not without --resume
        train_student(config_for(world, output, **settings))
    resumed = train_student(config_for(world, output, resume=True, **settings))
    first, ce = resumed.students
    assert first.already_complete and not ce.already_complete and ce.resumed_from_step == 2
    for ours, theirs in zip(resumed.students, reference.students):
        assert_same_weights(ours.model_dir, theirs.model_dir)
        ours_log = json.loads(ours.log_path.read_text())["steps"]
        theirs_log = json.loads(theirs.log_path.read_text())["steps"]
        assert [e["step"] for e in ours_log] == list(range(1, 7))  # the whole curve, history from the checkpoint
        assert [e["loss"] for e in ours_log] == pytest.approx([e["loss"] for e in theirs_log], rel=1e-6)
    assert checkpoint_names(output / "ce" / "checkpoints") == ["checkpoint-4", "checkpoint-6"]  # save_total_limit 2


def test_a_resumed_run_counts_the_tokens_of_the_whole_run(world, tmp_path, monkeypatch):  # noqa: F811
    """``tokens`` counts the steps before the checkpoint too (they are saved in it), not only the resumed part."""
    from first_distill.trainer import DistillationTrainer

    settings = dict(variants=("first",), max_steps=6, save_steps=2, lr_scheduler="linear", save_total_limit=None)
    reference = train_student(config_for(world, tmp_path / "reference", **settings)).students[0]
    assert reference.tokens == reference.tokens_this_run > 0

    original_step = DistillationTrainer.training_step

    def dies_after_step_5(self, *args, **kwargs):
        if self.state.global_step == 5:
            raise Killed
        return original_step(self, *args, **kwargs)

    output = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(DistillationTrainer, "training_step", dies_after_step_5)
        with pytest.raises(Killed):
            train_student(config_for(world, output, **settings))
    resumed = train_student(config_for(world, output, resume=True, **settings)).students[0]
    assert resumed.resumed_from_step == 4
    assert resumed.tokens == reference.tokens  # steps 1-6, not 5-6
    before = json.loads((output / "first" / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert 0 < resumed.tokens_this_run == resumed.tokens - before["num_input_tokens_seen"]
    reference_state = json.loads((tmp_path / "reference" / "first" / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert before["num_input_tokens_seen"] == reference_state["num_input_tokens_seen"]
    assert resumed.tokens_per_second == pytest.approx(resumed.tokens_this_run / resumed.seconds)
    recorded = json.loads((output / "first" / "result.json").read_text())
    assert recorded["tokens"] == reference.tokens and recorded["tokens_this_run"] == resumed.tokens_this_run


def test_a_resume_with_other_settings_is_refused(world, tmp_path):  # noqa: F811
    output = tmp_path / "run"
    train_student(config_for(world, output, variants=("ce",), max_steps=2))
    with pytest.raises(InputError) as caught:
        train_student(config_for(world, output, variants=("ce",), max_steps=2, learning_rate=1e-4, seed=3, resume=True))
    message = str(caught.value)
    assert "learning_rate (saved 0.003, now 0.0001)" in message and "seed (saved 0, now 3)" in message
    assert "max_steps" not in message and "\n" not in message
    again = train_student(config_for(world, output, variants=("ce",), max_steps=2, resume=True, progress=True))
    assert again.students[0].already_complete  # progress may differ; the finished student is reused


def _fail_while_saving(monkeypatch, calls_before_failure: int = 0):
    """Make ``save_pretrained`` write part of its files and then hit a full disk."""
    from transformers import PreTrainedModel

    original = PreTrainedModel.save_pretrained
    calls = {"n": 0}

    def save_pretrained(self, save_directory, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= calls_before_failure:
            return original(self, save_directory, *args, **kwargs)
        Path(save_directory).mkdir(parents=True, exist_ok=True)
        (Path(save_directory) / "model.safetensors").write_bytes(b"\0" * 100)  # a truncated weights file
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", save_pretrained)


def test_a_full_disk_while_checkpointing_leaves_no_checkpoint(world, tmp_path, monkeypatch):  # noqa: F811
    output = tmp_path / "run"
    _fail_while_saving(monkeypatch, calls_before_failure=1)  # checkpoint-2 is saved, checkpoint-4 fails
    with pytest.raises(InputError) as caught:
        train_student(config_for(world, output, variants=("first",), max_steps=6, save_steps=2))
    message = str(caught.value)
    assert message.startswith("no space left on the device while saving checkpoint-4") and "\n" not in message
    assert checkpoint_names(output / "first" / "checkpoints") == ["checkpoint-2"]  # no staging copy either
    assert not (output / "first" / "model").exists()
    monkeypatch.undo()
    resumed = train_student(config_for(world, output, variants=("first",), max_steps=6, save_steps=2, resume=True))
    assert resumed.students[0].resumed_from_step == 2 and (output / "first" / "model" / "model.safetensors").is_file()


def test_a_full_disk_while_saving_the_student_leaves_no_model(world, tmp_path, monkeypatch):  # noqa: F811
    output = tmp_path / "run"
    _fail_while_saving(monkeypatch, calls_before_failure=1)  # the Trainer's checkpoint at the last step is saved
    with pytest.raises(InputError, match=r"^no space left on the device while saving the trained student to .*model"):
        train_student(config_for(world, output, variants=("ce",), max_steps=2))
    leftovers = sorted(p.name for p in (output / "ce").iterdir())
    assert "model" not in leftovers and ".model.tmp" not in leftovers
    assert checkpoint_names(output / "ce" / "checkpoints") == ["checkpoint-2"]
