"""Training pairs that cannot be trained on are refused with one line naming the file and line: an empty or
binary file, a row without a completion, and a completion that is empty or gives no completion token."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest

from first_distill.training_data import (
    TokenizedExample, TrainingExample, TrainingSet, check_completion_tokens, read_training_jsonl, tokenize_examples)
from first_eval.errors import InputError
from tiny_models import tiny_llama_dir  # noqa: F401  (session fixture)


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines),
                    encoding="utf-8")
    return path


def refused(path: Path) -> str:
    with pytest.raises(InputError) as caught:
        read_training_jsonl(path)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_an_empty_file_is_refused(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"")
    assert refused(path) == f"--train {path}: empty training set (no prompt/completion rows)"
    path.write_text("\n  \n\n")
    assert "empty training set" in refused(path)


def test_a_row_without_completion_is_refused_at_its_line(tmp_path):
    path = write_lines(tmp_path / "train.jsonl", [{"prompt": "a", "completion": " b"}, "", {"prompt": "c"}])
    assert refused(path).startswith(f"--train {path}:3: row has no 'completion' (keys: prompt)")


@pytest.mark.parametrize("payload, message", [
    (gzip.compress(b'{"prompt": "a", "completion": " b"}\n', mtime=0), r":1: not a UTF-8 text file \(invalid start byte at byte 1 "),
    (b'{"prompt": "a", "completion": " b"}\n\x00\x00\x00\x00\n', r":2: not a text file \(it holds NUL bytes\)"),
    (b'{"prompt": "a", "completion": " b"}\n' * 3 + b'{"prompt": "\xff"}\n', r":4: not a UTF-8 text file"),
    (bytes(range(128, 256)), r":1: not a UTF-8 text file \(invalid start byte at byte 0 "),
])
def test_a_binary_file_is_refused_at_its_line(tmp_path, payload, message):
    path = tmp_path / "train.jsonl"
    path.write_bytes(payload)
    found = refused(path)
    assert found.startswith(f"--train {path}:") and found.endswith("expected JSONL text, one prompt/completion object per line")
    assert re.search(message, found), found


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"prompt": "a", "completion": " b"}).encode() + b"\n")
    assert read_training_jsonl(path).examples == (TrainingExample("a", " b"),)


def test_an_empty_completion_is_refused_by_the_reader_with_its_line(tmp_path):
    path = write_lines(tmp_path / "train.jsonl", [{"prompt": "a", "completion": " b"}, "", {"prompt": "c", "completion": ""}])
    assert refused(path) == (f"--train {path}:3: completion is empty; every pair needs at least one completion token")


def test_line_numbers_follow_the_file_and_survive_a_limit(tmp_path):
    path = write_lines(tmp_path / "train.jsonl", ["", {"prompt": "a", "completion": " b"}, "", {"prompt": "c", "completion": " d"}])
    training = read_training_jsonl(path)
    assert training.line_numbers == (2, 4)
    assert training.first(1).line_numbers == (2,) and training.first(1).examples == training.examples[:1]
    assert training.first(None) is training
    assert training.where(1) == f"--train {path.resolve()}:4"


def test_completions_without_a_token_are_refused_with_the_file_line(tmp_path, tiny_llama_dir):  # noqa: F811
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    path = write_lines(tmp_path / "train.jsonl", [{"prompt": "Water freezes at", "completion": " zero"}, "",
                                                   {"prompt": "Wat", "completion": "er"}])
    training = read_training_jsonl(path)
    tokenized = tokenize_examples(training.examples, tokenizer)
    assert [t.n_completion for t in tokenized][1] == 0  # "Wat" + "er" encodes as "Water": nothing of its own
    with pytest.raises(InputError) as caught:
        check_completion_tokens(training, tokenized)
    assert str(caught.value) == (f"--train {path.resolve()}:3: completion 'er' gives no token of its own (the tokenizer "
                                 "merges it into the prompt's last token); every pair needs at least one completion token")
    check_completion_tokens(training.first(1), tokenized[:1])  # the good pair alone passes


def test_whitespace_dropped_by_the_tokenizer_and_task_examples_are_named():
    no_completion = TokenizedExample(np.array([5, 6], dtype=np.int64), completion_start=2)
    with_one = TokenizedExample(np.array([5, 6, 7], dtype=np.int64), completion_start=2)
    jsonl = TrainingSet((TrainingExample("a", " b"), TrainingExample("Answer:", "  ")),
                        {"kind": "jsonl", "path": "/data/pairs.jsonl"}, (1, 7))
    with pytest.raises(InputError, match=r"^--train /data/pairs\.jsonl:7: completion '  ' is only whitespace and "
                                         r"tokenises to no token; every pair needs at least one completion token$"):
        check_completion_tokens(jsonl, [with_one, no_completion])
    task = TrainingSet((TrainingExample("Question: ok?\nAnswer:", " yes"), TrainingExample("Question: blank?\nAnswer:", "")),
                       {"kind": "lm-eval task", "task": "arc_easy"})
    with pytest.raises(InputError, match=r"^--train-task arc_easy: training example 1 \(prompt 'Question: blank\?\\nAnswer:'\): "
                                         r"completion is empty; every pair needs at least one completion token$"):
        check_completion_tokens(task, [with_one, no_completion])
