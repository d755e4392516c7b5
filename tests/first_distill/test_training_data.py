"""Training examples: JSONL rows, lm-eval task rendering (checked against a live lm-eval run's requests) and
tokenisation into completion tokens (the bridge's ``encode_pair``, itself checked against lm-eval's HF wrapper in
tests/first_eval/test_bridge_hf_wrapper.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from first_distill.training_data import TrainingExample, read_training_jsonl, task_training_set, tokenize_example, tokenize_examples
from first_eval.errors import InputError
from first_eval.lm_eval_bridge import encode_pair
from tiny_models import tiny_llama_dir  # noqa: F401  (session fixture)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows), encoding="utf-8")
    return path


# -------------------------------------------------------------------------------------------------- JSONL


def test_jsonl_rows_are_read_in_order_with_provenance(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [{"prompt": "a", "completion": " b"}, "", {"prompt": "", "completion": "c", "id": 3}])
    training = read_training_jsonl(path)
    assert training.examples == (TrainingExample("a", " b"), TrainingExample("", "c"))
    assert training.source["kind"] == "jsonl" and len(training.source["sha256"]) == 64
    assert training.to_dict()["n_examples"] == 2


@pytest.mark.parametrize("rows, message", [
    ([{"prompt": "a", "completion": "b"}, {"prompt": "only"}], r"train\.jsonl:2: row has no 'completion'"),
    ([{"text": "x"}], r"train\.jsonl:1: row has no 'prompt' and no 'completion'"),
    (["{not json"], r"train\.jsonl:1: not valid JSON"),
    (["[1, 2]"], r"train\.jsonl:1: expected a JSON object"),
    ([{"prompt": 1, "completion": "b"}], r"train\.jsonl:1: 'prompt' must be a string"),
    (["", "   "], r"empty training set"),
])
def test_bad_jsonl_raises_one_line_input_error(tmp_path, rows, message):
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(InputError, match=message) as caught:
        read_training_jsonl(path)
    assert "\n" not in str(caught.value)


def test_missing_jsonl_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_training_jsonl(tmp_path / "absent.jsonl")


# ------------------------------------------------------------------------------------------- tokenisation


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_llama_dir):  # noqa: F811
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_llama_dir))


def test_tokenized_example_marks_completion_tokens(tiny_tokenizer):
    example = TrainingExample("Question: Is the sky blue? \nAnswer: ", "yes")
    context_ids, completion_ids = encode_pair(tiny_tokenizer, example.prompt, example.completion)
    tokenized = tokenize_example(example, tiny_tokenizer)
    assert tokenized.input_ids.dtype == np.int64
    assert tokenized.input_ids.tolist() == context_ids + completion_ids
    assert tokenized.completion_start == len(context_ids)
    assert tokenized.input_ids[tokenized.completion_mask].tolist() == completion_ids
    assert tokenized.n_completion == len(completion_ids) and tokenized.truncated_tokens == 0


def test_tokenize_examples_equals_one_by_one(tiny_tokenizer):
    examples = [TrainingExample("Question: Is the sky blue? \nAnswer: ", "yes"), TrainingExample("", " hello"),
                TrainingExample("The sun rises in the", " east and sets in the west")]
    for max_length in (None, 4):
        batch = tokenize_examples(examples, tiny_tokenizer, max_length)
        for example, tokens in zip(examples, batch, strict=True):
            alone = tokenize_example(example, tiny_tokenizer, max_length)
            assert tokens.input_ids.tolist() == alone.input_ids.tolist()
            assert (tokens.completion_start, tokens.truncated_tokens) == (alone.completion_start, alone.truncated_tokens)


def test_left_truncation_keeps_the_completion_and_one_context_token(tiny_tokenizer):
    example = TrainingExample("Question: Which gas do plants take in from the air?\nAnswer:", " carbon dioxide and water")
    full = tokenize_example(example, tiny_tokenizer)
    n = full.n_completion
    cut = tokenize_example(example, tiny_tokenizer, max_length=n + 2)
    assert cut.input_ids.tolist() == full.input_ids[-(n + 2):].tolist()
    assert cut.completion_start == 2 and cut.n_completion == n
    assert cut.truncated_tokens == len(full.input_ids) - (n + 2)
    tight = tokenize_example(example, tiny_tokenizer, max_length=n)  # completion alone is too long
    assert tight.completion_start == 1 and tight.input_ids.tolist() == full.input_ids[-n:].tolist()


# ------------------------------------------------------------------------------------------- lm-eval tasks

RENDER_TASKS = {"arc_easy": "test", "commonsense_qa": "validation"}  # task -> the split lm-eval evaluates
N_DOCS = 8


@pytest.fixture(scope="module")
def train_as_eval_dir(shared_datasets, tmp_path_factory):
    """A data dir whose evaluated split holds the first training rows, so a live lm-eval run scores them."""
    root = tmp_path_factory.mktemp("train-as-eval")
    for task, eval_split in RENDER_TASKS.items():
        lines = (shared_datasets / task / "train.jsonl").read_text(encoding="utf-8").splitlines()[:N_DOCS]
        (root / task).mkdir()
        for split in ("train", eval_split):
            (root / task / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def live_requests(train_as_eval_dir, tiny_llama_dir, tmp_path_factory):  # noqa: F811
    """task -> {doc_id: (arguments as [(context, continuation), ...], gold)} from lm-eval's samples files."""
    import torch

    from first_eval.lm_eval_bridge import LiveRunConfig, run_lm_eval

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = run_lm_eval(LiveRunConfig(tasks=list(RENDER_TASKS), output_dir=tmp_path_factory.mktemp("live"),
                                        model_args=f"pretrained={tiny_llama_dir},dtype=float32",
                                        data_dir=train_as_eval_dir, device="cpu", num_fewshot=0))
    finally:
        torch.set_num_threads(threads)
    requests = {}
    for task, path in run.samples_paths.items():
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        requests[task] = {}
        for record in records:
            arguments = [(a["arg_0"], a["arg_1"]) for a in record["arguments"].values()]
            target = str(record["target"])  # an index ("2"), or the gold choice itself ("A", commonsense_qa)
            gold = int(target) if target.isdigit() else [c.strip() for _, c in arguments].index(target)
            requests[task][record["doc_id"]] = (arguments, gold)
    return requests


@pytest.mark.parametrize("task", list(RENDER_TASKS))
def test_task_examples_equal_the_requests_lm_eval_scores(task, train_as_eval_dir, live_requests):
    training = task_training_set(task, data_dir=train_as_eval_dir)
    assert len(training) == N_DOCS and training.source["split"] == "train"
    for doc_id, example in enumerate(training.examples):
        arguments, gold = live_requests[task][doc_id]
        assert example.prompt == arguments[gold][0]
        assert example.completion == arguments[gold][1]


def test_task_limit_and_provenance(shared_datasets):
    training = task_training_set("arc_easy", data_dir=shared_datasets, limit=3)
    assert len(training) == 3
    first = json.loads((shared_datasets / "arc_easy" / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    gold = first["choices"]["label"].index(first["answerKey"])
    assert training.examples[0] == TrainingExample(f"Question: {first['question']}\nAnswer:", " " + first["choices"]["text"][gold])
    assert training.source["data_files"] == {"train": str((shared_datasets / "arc_easy" / "train.jsonl").resolve())}


@pytest.mark.parametrize("task, message", [
    ("truthfulqa_mc1", r"declares no training_split"),
    ("piqa", r"piqa needs .*piqa/train\.jsonl .*not found"),
])
def test_task_errors(task, message, shared_datasets):
    with pytest.raises(InputError, match=message):
        task_training_set(task, data_dir=shared_datasets)


@pytest.mark.slow  # each builds lm-eval's full task index (~10 s)
@pytest.mark.parametrize("task, message", [
    ("arc_esay", r"unknown task 'arc_esay'\. Did you mean 'arc_easy'"),
    ("ai2_arc", r"is a group or tag of tasks"),
])
def test_task_name_errors(task, message, shared_datasets):
    with pytest.raises(InputError, match=message):
        task_training_set(task, data_dir=shared_datasets)


def test_missing_training_file_names_it(tmp_path):
    (tmp_path / "arc_easy").mkdir()
    with pytest.raises(InputError, match=r"arc_easy needs .*arc_easy/train\.jsonl .*not found"):
        task_training_set("arc_easy", data_dir=tmp_path)
