"""--data-dir: lm-eval's own task definitions fed from local JSONL files (no model involved)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from first_eval.errors import InputError
from first_eval.lm_eval_bridge.local_tasks import (
    GENERATED_MARKER,
    eval_split_of,
    fewshot_split_of,
    plan_local_tasks,
    prepare_local_tasks,
)
from first_eval.lm_eval_bridge.task_lookup import builtin_tasks_dir, find_task_definitions, read_task_yaml

TASKS = ["arc_easy", "arc_challenge", "commonsense_qa", "boolq", "openbookqa", "piqa", "truthfulqa_mc1"]


def first_row(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        return json.loads(handle.readline())


# What lm-eval's YAML says each task shows the model, worked out by hand from the raw Hub-schema row:
# (prompt, choices, gold index).
def expected_arc(row):
    return f"Question: {row['question']}\nAnswer:", row["choices"]["text"], row["choices"]["label"].index(row["answerKey"])


def expected_commonsense_qa(row):
    letters = "ABCDE"
    lines = "".join(f"\n{letter}. {text}" for letter, text in zip(letters, row["choices"]["text"]))
    return f"Question: {row['question'].strip()}{lines}\nAnswer:", list(letters), letters.index(row["answerKey"])


def expected_boolq(row):
    return f"{row['passage']}\nQuestion: {row['question']}?\nAnswer:", ["no", "yes"], row["label"]


def expected_openbookqa(row):
    return row["question_stem"], row["choices"]["text"], row["choices"]["label"].index(row["answerKey"].lstrip())


def expected_piqa(row):
    return f"Question: {row['goal']}\nAnswer:", [row["sol1"], row["sol2"]], row["label"]


def expected_truthfulqa_mc1(row):
    return "\n\nQ: " + row["question"] + "\nA:", row["mc1_targets"]["choices"], 0


EXPECTED = {
    "arc_easy": ("arc_easy/test.jsonl", expected_arc),
    "arc_challenge": ("arc_challenge/test.jsonl", expected_arc),
    "commonsense_qa": ("commonsense_qa/validation.jsonl", expected_commonsense_qa),
    "boolq": ("boolq/validation.jsonl", expected_boolq),
    "openbookqa": ("openbookqa/test.jsonl", expected_openbookqa),
    "piqa": ("piqa/validation.jsonl", expected_piqa),
    "truthfulqa_mc1": ("truthfulqa/mc_validation.jsonl", expected_truthfulqa_mc1),
}


@pytest.fixture(scope="module")
def local_tasks(shared_datasets, tmp_path_factory) -> Path:
    return prepare_local_tasks(TASKS, shared_datasets, tmp_path_factory.mktemp("local") / "tasks")


@pytest.fixture(scope="module")
def loaded_tasks(local_tasks) -> dict:
    """lm-eval builds every generated task (reads the local files) with only the generated folder indexed."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(local_tasks), include_defaults=False)
    return manager.load(TASKS)["tasks"]


def test_generated_yaml_includes_lm_evals_file_and_overrides_only_the_data_source(local_tasks, shared_datasets):
    text = (local_tasks / "arc_challenge.yaml").read_text()
    assert text.startswith(GENERATED_MARKER)
    body = yaml.safe_load(text)
    assert body == {
        "include": str(builtin_tasks_dir() / "arc" / "arc_challenge.yaml"),
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {
            "data_files": {
                "test": str(shared_datasets.resolve() / "arc_challenge" / "test.jsonl"),
                "train": str(shared_datasets.resolve() / "arc_challenge" / "train.jsonl"),
            }
        },
    }
    assert sorted(p.stem for p in local_tasks.glob("*.yaml")) == sorted(TASKS)


def test_splits_are_read_from_the_resolved_config_including_inherited_keys():
    (arc_challenge,) = find_task_definitions(["arc_challenge"])["arc_challenge"]
    own = yaml.safe_load((builtin_tasks_dir() / "arc" / "arc_challenge.yaml").read_text())
    assert "test_split" not in own  # inherited from arc_easy.yaml
    assert (eval_split_of(arc_challenge.config), fewshot_split_of(arc_challenge.config)) == ("test", "train")
    (mc1,) = find_task_definitions(["truthfulqa_mc1"])["truthfulqa_mc1"]
    assert (eval_split_of(mc1.config), fewshot_split_of(mc1.config)) == ("validation", "validation")
    assert fewshot_split_of({"training_split": "train", "fewshot_split": "dev"}) == "dev"
    assert fewshot_split_of({"fewshot_split": "dev", "fewshot_config": {"split": "extra"}}) == "extra"
    assert fewshot_split_of({"fewshot_config": {"samples": [{"q": 1}]}, "validation_split": "v"}) is None


@pytest.mark.parametrize("task", TASKS)
def test_lm_eval_builds_the_task_from_local_files_with_its_own_prompt(task, loaded_tasks, shared_datasets):
    relative, expected = EXPECTED[task]
    built = loaded_tasks[task]
    assert built.config.dataset_path == "json"
    assert built.OUTPUT_TYPE == "multiple_choice"
    docs = built.eval_docs
    assert len(docs) == sum(1 for line in (shared_datasets / relative).open() if line.strip())
    prompt, choices, gold = expected(first_row(shared_datasets / relative))
    doc = docs[0]
    text = built.doc_to_text(doc)
    if task == "truthfulqa_mc1":  # six fixed Q/A examples precede the question
        assert text.startswith("Q: What is human life expectancy") and text.endswith(prompt)
    else:
        assert text == prompt
    assert built.doc_to_choice(doc) == choices
    target = built.doc_to_target(doc)
    assert (choices.index(target) if isinstance(target, str) else target) == gold


def test_boolq_and_piqa_without_train_file_run_zero_shot_on_the_eval_file(loaded_tasks, local_tasks, shared_datasets):
    body = yaml.safe_load((local_tasks / "piqa.yaml").read_text())
    validation = str(shared_datasets.resolve() / "piqa" / "validation.jsonl")
    assert body["dataset_kwargs"]["data_files"] == {"validation": validation, "train": validation}
    assert "stands in" in (local_tasks / "boolq.yaml").read_text()
    assert len(loaded_tasks["boolq"].eval_docs) == 3270


def test_missing_eval_file_names_the_exact_path(tmp_path):
    (tmp_path / "arc_easy").mkdir()
    expected = (f"--data-dir {tmp_path}: arc_easy needs {tmp_path}/arc_easy/test.jsonl or "
                f"{tmp_path}/ai2_arc/ARC-Easy/test.jsonl (its test split); not found")
    with pytest.raises(InputError, match=f"^{re.escape(expected)}$"):
        prepare_local_tasks(["arc_easy", "piqa"], tmp_path, tmp_path / "out")


def test_few_shot_needs_the_training_file(shared_datasets, tmp_path):
    with pytest.raises(InputError, match=r"boolq needs .*/boolq/train\.jsonl \(its train split, for --num-fewshot 2\); not found"):
        prepare_local_tasks(["boolq"], shared_datasets, tmp_path, num_fewshot=2)
    # truthfulqa_mc1 fixes num_fewshot: 0 in its YAML; lm-eval never overrides that, so nothing more is needed
    (planned,) = plan_local_tasks(find_task_definitions(["truthfulqa_mc1"]), shared_datasets, tmp_path, num_fewshot=5)
    assert set(planned.data_files) == {"validation"}


def test_one_task_may_use_a_flat_folder_but_two_may_not(shared_datasets, tmp_path):
    for split in ("test", "train"):
        lines = (shared_datasets / "arc_easy" / f"{split}.jsonl").read_text().splitlines()[:3]
        (tmp_path / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    (planned,) = plan_local_tasks(find_task_definitions(["arc_easy"]), tmp_path, tmp_path / "out", num_fewshot=1)
    assert planned.data_files == {"test": tmp_path.resolve() / "test.jsonl", "train": tmp_path.resolve() / "train.jsonl"}
    with pytest.raises(InputError, match=r"arc_easy needs .*/arc_easy/test\.jsonl or .*/ai2_arc/ARC-Easy/test\.jsonl \(its test split\)"):
        plan_local_tasks(find_task_definitions(["arc_easy", "arc_challenge"]), tmp_path, tmp_path / "out")


def test_single_task_error_mentions_the_flat_alternative(tmp_path):
    with pytest.raises(InputError, match=rf"piqa needs {tmp_path}/piqa/validation\.jsonl or {tmp_path}/validation\.jsonl"):
        prepare_local_tasks(["piqa"], tmp_path, tmp_path / "out")


def test_json_extension_is_accepted_and_bad_files_are_named(shared_datasets, tmp_path):
    (tmp_path / "piqa").mkdir()
    shutil.copy(shared_datasets / "piqa" / "validation.jsonl", tmp_path / "piqa" / "validation.json")
    (planned,) = plan_local_tasks(find_task_definitions(["piqa"]), tmp_path, tmp_path / "out")
    assert planned.data_files["validation"].name == "validation.json"
    (tmp_path / "piqa" / "validation.jsonl").write_text("")
    with pytest.raises(InputError, match=r"piqa/validation\.jsonl: the file is empty"):
        prepare_local_tasks(["piqa"], tmp_path, tmp_path / "out")
    (tmp_path / "piqa" / "validation.jsonl").write_text("[1, 2]\n")
    with pytest.raises(InputError, match=r"line 1 is a JSON list; each line must be one record"):
        prepare_local_tasks(["piqa"], tmp_path, tmp_path / "out")
    (tmp_path / "piqa" / "validation.jsonl").write_text("{'goal': 1}\n")
    with pytest.raises(InputError, match=r"line 1 is not valid JSON"):
        prepare_local_tasks(["piqa"], tmp_path, tmp_path / "out")


def test_missing_data_dir_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match=r"--data-dir .*/nope: no such folder"):
        prepare_local_tasks(["piqa"], tmp_path / "nope", tmp_path / "out")


def test_stale_generated_yamls_are_removed_but_other_files_kept(shared_datasets, tmp_path):
    out = tmp_path / "out"
    prepare_local_tasks(["piqa", "boolq"], shared_datasets, out)
    (out / "mine.yaml").write_text("task: mine\n")
    prepare_local_tasks(["piqa"], shared_datasets, out)
    assert sorted(p.name for p in out.glob("*.yaml")) == ["mine.yaml", "piqa.yaml"]


def test_task_from_an_include_path_is_found_before_lm_evals(shared_datasets, tmp_path):
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "my_arc.yaml").write_text(
        f"include: {builtin_tasks_dir() / 'arc' / 'arc_easy.yaml'}\ntask: my_arc\ndoc_to_text: 'Q: {{{{question}}}}\\nA:'\n"
    )
    (definition,) = find_task_definitions(["my_arc"], [custom])["my_arc"]
    assert definition.yaml_path == (custom / "my_arc.yaml").resolve()
    assert definition.config["doc_to_choice"] == "{{choices.text}}"  # inherited
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "my_arc").symlink_to(shared_datasets / "arc_easy")
    (planned,) = plan_local_tasks({"my_arc": [definition]}, tmp_path / "data", tmp_path / "out")
    assert planned.source_yaml == (custom / "my_arc.yaml").resolve()


def test_read_task_yaml_keeps_function_references_as_text():
    config = read_task_yaml(builtin_tasks_dir() / "truthfulqa" / "truthfulqa_mc2.yaml")
    assert config["process_results"] == "!function utils.process_results_mc2"
    assert config["dataset_name"] == "multiple_choice"  # from the included truthfulqa_mc1.yaml


@pytest.mark.slow
def test_same_named_generated_task_wins_over_lm_evals_default(local_tasks):
    """With the defaults indexed too (~8 s), the generated arc_easy wins; its tag then lists only generated tasks."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(local_tasks))
    assert Path(manager.task_index["arc_easy"].yaml_path) == local_tasks / "arc_easy.yaml"
    assert manager.load(["arc_easy"])["tasks"]["arc_easy"].config.dataset_path == "json"
    assert manager.task_index["hellaswag"].yaml_path is not None  # defaults still there


@pytest.mark.slow
def test_unknown_task_and_groups_fall_back_to_lm_evals_index(shared_datasets, tmp_path):
    with pytest.raises(InputError, match=r"unknown task 'arc_esay'\. Did you mean 'arc_easy'"):
        prepare_local_tasks(["arc_esay"], shared_datasets, tmp_path)
    with pytest.raises(InputError, match=r"'ai2_arc' is a group or tag of tasks; name its tasks instead \(arc_challenge, arc_easy\)"):
        prepare_local_tasks(["ai2_arc"], shared_datasets, tmp_path)
