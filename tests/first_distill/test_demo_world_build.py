"""Building the demo world (mini recipe): files, tokenizer, models, the cache and interrupted builds."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from first_demo import build as build_module
from first_demo.build import build_world, find_complete_world, world_folder_name
from first_demo.config import WorldConfig
from first_demo.questions import SPLITS, prompt_text
from first_demo.world import DemoWorld

MINI = WorldConfig.mini()


@pytest.fixture(autouse=True)
def _offline_hf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> DemoWorld:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return build_world(tmp_path_factory.mktemp("worlds"), seed=0, progress=False, config=MINI)


def test_world_layout_and_manifest(world: DemoWorld) -> None:
    assert world.root.name == "world-mini-seed0"
    assert world.seed == 0 and world.config_hash == MINI.config_hash()
    assert world.in_domain_tasks == ("first_demo_boolq", "first_demo_csqa")
    assert world.ood_tasks == ("first_demo_boolq_ood", "first_demo_csqa_ood")
    assert set(world.train_split_files) == set(world.in_domain_tasks)
    for path in (world.tokenizer_dir, world.student_base_dir, world.teacher_base_dir, world.teacher_dir):
        assert path.is_dir()
    manifest = json.loads((world.root / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["config"] == MINI.to_dict()
    assert json.loads((world.root / "bayes.json").read_text()) == world.bayes
    assert not list(world.root.parent.glob(".world-mini-seed0.partial-*"))


def test_task_yamls_point_at_existing_split_files(world: DemoWorld) -> None:
    yamls = sorted(world.task_dir.glob("*.yaml"))
    assert [p.stem for p in yamls] == sorted(world.tasks)
    for path in yamls:
        config = yaml.safe_load(path.read_text())
        assert config["task"] == path.stem
        assert config["dataset_path"] == "json" and config["output_type"] == "multiple_choice"
        assert (config["training_split"], config["validation_split"], config["test_split"]) == SPLITS
        assert config["doc_to_text"] == "Question: {{question}}\nAnswer:"
        assert (config["doc_to_choice"], config["doc_to_target"]) == ("choices", "label")
        assert [m["metric"] for m in config["metric_list"]] == ["acc", "acc_norm"]
        for split in SPLITS:
            data_file = Path(config["dataset_kwargs"]["data_files"][split])
            assert data_file.is_absolute() and data_file.is_file()
            assert data_file == world.split_files[path.stem][split]
        sizes = MINI.split_sizes("boolq" if "boolq" in path.stem else "csqa", "ood" if path.stem.endswith("_ood") else "in_domain")
        assert len(world.questions(path.stem, "test")) == sizes.test


def test_bayes_numbers_match_the_test_files(world: DemoWorld) -> None:
    for task in world.tasks:
        questions = world.questions(task, "test")
        probs = [np.array(q.bayes_probs) for q in questions]
        accuracy = np.mean([int(np.argmax(p)) == q.label for p, q in zip(probs, questions)])
        assert world.bayes[task]["accuracy"] == pytest.approx(accuracy, abs=1e-6)
        assert world.bayes[task]["expected_accuracy"] == pytest.approx(np.mean([p.max() for p in probs]), abs=1e-6)
        assert 0.0 <= world.bayes[task]["ece"] <= 1.0


def test_tokenizer_round_trips_and_splits_like_lm_eval(world: DemoWorld) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(world.tokenizer_dir))
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token) == ("<pad>", "<bos>", "<eos>")
    assert len({tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id}) == 3
    question = world.questions("first_demo_csqa", "test")[0]
    samples = [prompt_text(question.question), "Ünïcode ☃ and\ttabs  double  spaces\n", "the colour of x is red."]
    for text in samples:
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id and ids[-1] != tokenizer.eos_token_id
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
    # lm-eval scores choice c as encode(context + " " + c)[len(encode(context)):]
    context = prompt_text(question.question)
    context_ids = tokenizer(context)["input_ids"]
    for choice in question.choices:
        whole = tokenizer(f"{context} {choice}")["input_ids"]
        assert whole[: len(context_ids)] == context_ids
        assert tokenizer.decode(whole[len(context_ids):]) == f" {choice}"


def test_models_reload_with_from_pretrained(world: DemoWorld) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = {}
    for name, path, size in (
        ("student", world.student_base_dir, MINI.student_base),
        ("teacher_base", world.teacher_base_dir, MINI.teacher_base),
        ("teacher", world.teacher_dir, MINI.teacher_base),
    ):
        model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(path))  # each model folder carries its tokenizer
        assert type(model).__name__ == "LlamaForCausalLM"
        assert model.config.hidden_size == size.hidden_size and model.config.num_hidden_layers == size.n_layers
        assert model.config.vocab_size == len(tokenizer)
        assert model.config.bos_token_id == tokenizer.bos_token_id and model.config.pad_token_id == tokenizer.pad_token_id
        ids = torch.tensor([tokenizer("Question: can x swim?\nAnswer:")["input_ids"]])
        with torch.no_grad():
            loaded[name] = model(input_ids=ids).logits
        assert torch.isfinite(loaded[name]).all()
    assert not torch.allclose(loaded["teacher"], loaded["teacher_base"])  # the fine-tune changed the model


def test_cached_world_is_reused_without_rebuilding(world: DemoWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("a complete cached world was rebuilt")

    monkeypatch.setattr(build_module, "_build_into", must_not_build)
    again = build_world(world.root.parent, seed=0, progress=False, config=MINI)
    assert again == world
    assert find_complete_world(world.root.parent, 0, MINI) == world
    assert find_complete_world(world.root.parent, 1, MINI) is None  # other seed: not built
    assert find_complete_world(world.root.parent, 0, MINI.with_changes(finetune_epochs=3)) is None  # other recipe


class _Sentinel(Exception):
    pass


def _refuse_build(*args: object, **kwargs: object) -> None:
    raise _Sentinel


def test_interrupted_builds_are_not_mistaken_for_complete_worlds(
    world: DemoWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "worlds"
    final = root / world_folder_name(MINI, 0)
    shutil.copytree(world.root, final)
    (final / "manifest.json").unlink()  # killed before the manifest was written
    dead_partial = root / f".{final.name}.partial-999999999-deadbeef"  # a build killed mid-way
    shutil.copytree(world.root, dead_partial)
    assert find_complete_world(root, 0, MINI) is None
    monkeypatch.setattr(build_module, "_build_into", _refuse_build)
    with pytest.raises(_Sentinel):  # it starts a real rebuild instead of returning the broken folder
        build_world(root, seed=0, progress=False, config=MINI)
    assert not dead_partial.exists()  # leftovers of dead builds are cleaned up
    assert not list(root.glob(f".{final.name}.partial-*"))  # and the failed build removed its own
    with pytest.raises(ValueError, match="not a complete demo world"):
        DemoWorld.load(final)


def test_world_with_another_recipe_hash_is_rebuilt(world: DemoWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "worlds"
    final = root / world_folder_name(MINI, 0)
    shutil.copytree(world.root, final)
    manifest = json.loads((final / "manifest.json").read_text())
    manifest["config_hash"] = "0" * 16
    (final / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(build_module, "_build_into", _refuse_build)
    with pytest.raises(_Sentinel):
        build_world(root, seed=0, progress=False, config=MINI)


def test_folder_names() -> None:
    assert world_folder_name(WorldConfig(), 3) == "world-seed3"
    assert world_folder_name(MINI, 0) == "world-mini-seed0"
    with pytest.raises(ValueError, match="seed"):
        world_folder_name(MINI, -1)


def test_questions_of_unknown_task_or_split(world: DemoWorld) -> None:
    with pytest.raises(ValueError, match="unknown task"):
        world.questions("boolq", "test")
    with pytest.raises(ValueError, match="unknown split"):
        world.questions("first_demo_boolq", "dev")


def test_a_moved_world_is_reused_and_its_tasks_still_load(world: DemoWorld, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from first_distill.training_data import task_training_set

    moved_root = tmp_path / "elsewhere"
    shutil.copytree(world.root, moved_root / world.root.name)
    monkeypatch.setattr(build_module, "_build_into", _refuse_build)
    moved = build_world(moved_root, seed=0, progress=False, config=MINI)
    for path in Path(moved.task_dir).glob("*.yaml"):
        for data_file in yaml.safe_load(path.read_text())["dataset_kwargs"]["data_files"].values():
            assert Path(data_file).is_file() and Path(data_file).is_relative_to(moved_root.resolve())
    training = task_training_set("first_demo_boolq", include_path=Path(moved.task_dir))
    assert len(training) == len(moved.questions("first_demo_boolq", "train"))


@pytest.mark.parametrize(("value", "threads"), [(None, build_module.TORCH_THREADS), ("1", 1), ("3", 3),
                                                ("0", build_module.TORCH_THREADS), ("x", build_module.TORCH_THREADS)])
def test_build_threads_follow_omp_num_threads_when_set(monkeypatch: pytest.MonkeyPatch, value, threads) -> None:
    if value is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert build_module.build_threads() == threads
