"""``--apply-chat-template`` / ``--system-instruction``: the training pairs ``first distill`` renders are the very
strings a live lm-eval run scores with the same chat template, lettered (``--format letters``) and cloze.

Oracles: lm-eval's own samples file (the (context, continuation) of the gold choice it scored) and, independently
of both, the ChatML text written by hand from the raw ARC-Easy rows, so a template or system message that were
ignored on both sides would still fail.
"""

from __future__ import annotations

import json
import shutil

import pytest

from first_distill.training_data import task_training_set
from first_eval.lm_eval_bridge import LiveRunConfig, run_lm_eval
from tiny_models import tiny_llama_dir  # noqa: F401  (session fixture)

SYSTEM = "Answer with a letter."
N_DOCS = 5
# ChatML-like, with system/user/assistant roles; Jinja as transformers renders it.
CHAT_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def chatml(user: str, system: str = SYSTEM) -> str:
    """The prompt the template must produce for one system and one user message, written out by hand."""
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def chat_model_dir(tiny_llama_dir, tmp_path_factory):  # noqa: F811
    """The tiny Llama with a chat template in its saved tokenizer."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("chat-llama") / "model"
    shutil.copytree(tiny_llama_dir, folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def chat_tokenizer(chat_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(chat_model_dir))
    assert tokenizer.chat_template == CHAT_TEMPLATE  # saved and read back
    return tokenizer


@pytest.fixture(scope="module")
def raw_test_rows(shared_datasets):
    lines = (shared_datasets / "arc_easy" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:N_DOCS]]


def live_run(model_dir, shared_datasets, output_dir, format: str):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_lm_eval(LiveRunConfig(
            tasks=("arc_easy",), data_dir=shared_datasets, limit=N_DOCS, apply_chat_template=True,
            system_instruction=SYSTEM, format=format, model_args=f"pretrained={model_dir},dtype=float32", device="cpu",
            batch_size=4, num_fewshot=0, output_dir=output_dir))
    finally:
        torch.set_num_threads(threads)


def scored_requests(run, task: str) -> dict[int, tuple[list[tuple[str, str]], int, dict]]:
    """doc_id -> (every choice's (context, continuation), the gold index, the doc) from lm-eval's samples file."""
    path = run.samples_paths[task]
    requests = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        arguments = [(a["arg_0"], a["arg_1"]) for a in record["arguments"].values()]
        requests[int(record["doc_id"])] = (arguments, int(record["target"]), record["doc"])
    return requests


@pytest.fixture(scope="module")
def letters_run(chat_model_dir, shared_datasets, tmp_path_factory):
    return live_run(chat_model_dir, shared_datasets, tmp_path_factory.mktemp("chat-letters"), "letters")


@pytest.fixture(scope="module")
def cloze_run(chat_model_dir, shared_datasets, tmp_path_factory):
    return live_run(chat_model_dir, shared_datasets, tmp_path_factory.mktemp("chat-cloze"), "cloze")


def test_lettered_training_pairs_are_the_chat_prompts_lm_eval_scored(letters_run, chat_tokenizer, raw_test_rows):
    assert letters_run.lettered is not None and letters_run.lettered.names == ("arc_easy_letters",)
    requests = scored_requests(letters_run, "arc_easy_letters")
    assert sorted(requests) == list(range(N_DOCS))
    # The lettered variant evaluates its test split; render that split (split_key names the task's split key).
    training = task_training_set("arc_easy_letters", include_path=letters_run.lettered.folder, limit=N_DOCS,
                                 split_key="test_split", chat_tokenizer=chat_tokenizer, system_instruction=SYSTEM)
    assert len(training) == N_DOCS and training.source["split"] == "test"
    assert training.source["apply_chat_template"] is True and training.source["system_instruction"] == SYSTEM
    for doc_id, (example, row) in enumerate(zip(training.examples, raw_test_rows)):
        arguments, gold, doc = requests[doc_id]
        assert doc["source_doc_id"] == doc_id
        # byte for byte what lm-eval scored for the gold choice
        assert example.prompt == arguments[gold][0]
        assert example.completion == arguments[gold][1]
        # hand-written oracle: ChatML around the lettered question; under a chat template lm-eval drops the
        # target delimiter (no gen_prefix), so the continuations are the bare letters
        options = "".join(f"\n{'ABCDE'[i]}. {text.strip()}" for i, text in enumerate(row["choices"]["text"]))
        assert example.prompt == chatml(f"Question: {row['question']}{options}\nAnswer:")
        assert gold == row["choices"]["label"].index(row["answerKey"])
        assert [continuation for _, continuation in arguments] == list("ABCDE"[: len(row["choices"]["text"])])
        assert example.completion == "ABCDE"[gold]
        assert example.prompt.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n")
        assert example.prompt.endswith("<|im_start|>assistant\n")


def test_cloze_training_pairs_are_the_chat_prompts_lm_eval_scored(cloze_run, chat_tokenizer, shared_datasets,
                                                                  raw_test_rows):
    assert cloze_run.lettered is None
    requests = scored_requests(cloze_run, "arc_easy")
    assert sorted(requests) == list(range(N_DOCS))
    training = task_training_set("arc_easy", data_dir=shared_datasets, limit=N_DOCS, split_key="test_split",
                                 chat_tokenizer=chat_tokenizer, system_instruction=SYSTEM)
    assert len(training) == N_DOCS and training.source["split"] == "test"
    for doc_id, (example, row) in enumerate(zip(training.examples, raw_test_rows)):
        arguments, gold, _ = requests[doc_id]
        assert example.prompt == arguments[gold][0]
        assert example.completion == arguments[gold][1]
        assert gold == row["choices"]["label"].index(row["answerKey"])
        assert example.prompt == chatml(f"Question: {row['question']}\nAnswer:")
        assert example.completion == row["choices"]["text"][gold]  # no leading space under the chat template


def test_without_chat_template_the_same_split_renders_plain_text(shared_datasets, raw_test_rows):
    """The contrast: the same call without a chat tokenizer gives lm-eval's plain prompt, so the markers above
    come from the template and nothing else."""
    training = task_training_set("arc_easy", data_dir=shared_datasets, limit=N_DOCS, split_key="test_split")
    for example, row in zip(training.examples, raw_test_rows):
        gold = row["choices"]["label"].index(row["answerKey"])
        assert example.prompt == f"Question: {row['question']}\nAnswer:"
        assert example.completion == " " + row["choices"]["text"][gold]
        assert "<|im_start|>" not in example.prompt and SYSTEM not in example.prompt
