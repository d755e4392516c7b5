"""Training examples for distillation: (prompt, completion) text pairs and their token ids.

Two sources, one value (``TrainingSet``):

- a JSONL file, one ``{"prompt": ..., "completion": ...}`` object per line (``read_training_jsonl``);
- the training split of an lm-eval multiple-choice task (``task_training_set``), rendered by lm-eval's own task
  object exactly as an evaluation request (the bridge's ``render_task_split``): so a student trains on the very
  strings lm-eval scores.

Tokenisation (``tokenize_example``) is lm-eval's own, run by the bridge's ``encode_pairs`` over lm-eval's HF
wrapper without a model: for causal models the context's trailing whitespace moves to the continuation,
``whole = encode(context + continuation)``, ``context_ids = encode(context)`` and the completion is
``whole[len(context_ids):]``; an empty prompt is lm-eval's prefix token (BOS, else EOS). Only completion tokens
carry teacher knowledge and loss.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from first_eval.errors import InputError
from first_eval.lm_eval_bridge import encode_pair, encode_pairs, render_task_split

EMPTY_COMPLETION = "completion is empty; every pair needs at least one completion token"


@dataclass(frozen=True)
class TrainingExample:
    """One training pair: the model reads ``prompt`` and learns to continue it with ``completion``."""

    prompt: str
    completion: str

    def to_dict(self) -> dict[str, str]:
        return {"prompt": self.prompt, "completion": self.completion}


@dataclass(frozen=True)
class TrainingSet:
    """Examples in their source order, with where they came from (recorded in the knowledge manifest)."""

    examples: tuple[TrainingExample, ...]
    source: dict[str, Any] = field(default_factory=dict)
    line_numbers: tuple[int, ...] = ()  # JSONL: the file line each example was read from (for error messages)

    def __len__(self) -> int:
        return len(self.examples)

    def first(self, n: int | None) -> "TrainingSet":
        """The first ``n`` examples (all of them for None), same source."""
        if n is None:
            return self
        return TrainingSet(self.examples[:n], self.source, self.line_numbers[:n])

    def where(self, index: int) -> str:
        """Where example ``index`` came from, as the flag that gave it: ``--train FILE:LINE`` or ``--train-task NAME: ...``."""
        if self.source.get("kind") == "jsonl":
            line = f":{self.line_numbers[index]}" if index < len(self.line_numbers) else f" (example {index})"
            return f"--train {self.source.get('path')}{line}"
        if self.source.get("kind") == "lm-eval task":
            return (f"--train-task {self.source.get('task')}: training example {index} "
                    f"(prompt {self.examples[index].prompt[-60:]!r})")
        return f"training example {index}"

    def to_dict(self) -> dict[str, Any]:
        return {**self.source, "n_examples": len(self.examples)}


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids of ``prompt + completion``: ``input_ids`` (L,) int64; completion tokens are ``input_ids[completion_start:]``.

    Completion token ``p`` is predicted by the logits at position ``p - 1``, so ``completion_start >= 1``.
    ``truncated_tokens``: how many tokens left truncation removed from the front.
    """

    input_ids: np.ndarray
    completion_start: int
    truncated_tokens: int = 0

    @property
    def n_completion(self) -> int:
        """Completion tokens (positions that carry knowledge and loss)."""
        return len(self.input_ids) - self.completion_start

    @property
    def completion_mask(self) -> np.ndarray:
        """(L,) bool, True at completion tokens."""
        mask = np.zeros(len(self.input_ids), dtype=bool)
        mask[self.completion_start:] = True
        return mask


# ------------------------------------------------------------------------------------------------ JSONL


def read_training_jsonl(path: str | Path) -> TrainingSet:
    """Read ``{"prompt": str, "completion": str}`` per line (blank lines skipped); ``InputError`` naming file and line.

    Refused, one line each: a missing file, an empty one, a binary (not UTF-8, or NUL bytes) one, a row that is not
    a JSON object with string ``prompt`` and ``completion``, and an empty ``completion`` (the teacher's knowledge
    and the loss live on completion tokens). Lines are read as bytes and decoded one by one, so a bad byte is
    reported at its line.
    """
    from first_distill.store.fingerprint import file_sha256

    path = Path(path)
    if not path.is_file():
        raise InputError(f"--train {path}: no such file")
    examples, line_numbers = [], []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise InputError(f"--train {path}:{number}: not a UTF-8 text file ({error.reason} at byte {error.start} "
                                 "of the line); expected JSONL text, one prompt/completion object per line") from None
            if "\0" in line:
                raise InputError(f"--train {path}:{number}: not a text file (it holds NUL bytes); expected JSONL text, "
                                 "one prompt/completion object per line")
            if line.strip():
                examples.append(_parse_row(line, path, number))
                line_numbers.append(number)
    if not examples:
        raise InputError(f"--train {path}: empty training set (no prompt/completion rows)")
    return TrainingSet(tuple(examples), {"kind": "jsonl", "path": str(path.resolve()), "sha256": file_sha256(path)},
                       tuple(line_numbers))


def _parse_row(line: str, path: Path, number: int) -> TrainingExample:
    where = f"--train {path}:{number}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object with 'prompt' and 'completion', got {type(row).__name__}")
    missing = [key for key in ("prompt", "completion") if key not in row]
    if missing:
        raise InputError(f"{where}: row has no {' and no '.join(repr(m) for m in missing)} "
                         f"(keys: {', '.join(sorted(row)) or 'none'}); each line needs 'prompt' and 'completion'")
    for key in ("prompt", "completion"):
        if not isinstance(row[key], str):
            raise InputError(f"{where}: {key!r} must be a string, got {type(row[key]).__name__} {row[key]!r:.60}")
    if row["completion"] == "":
        raise InputError(f"{where}: {EMPTY_COMPLETION}")
    return TrainingExample(row["prompt"], row["completion"])


# ------------------------------------------------------------------------------------------- lm-eval task


def task_training_set(task: str, data_dir: str | Path | None = None, include_path: str | Path | None = None,
                      limit: int | None = None, split_key: str = "training_split", chat_tokenizer: Any = None,
                      system_instruction: str | None = None) -> TrainingSet:
    """The training split (or ``split_key``) of lm-eval multiple-choice task ``task``, rendered by lm-eval.

    The bridge's ``render_task_split`` does the rendering (arguments as there); this adds the training set's one
    rule: an empty split is refused (``InputError``).
    """
    rendered = render_task_split(task, split_key, data_dir, include_path, limit, chat_tokenizer, system_instruction)
    if not rendered.pairs:
        raise InputError(f"--train-task {task}: empty training set ({rendered.n_documents} document(s) in split "
                         f"{rendered.source['split']!r} with a gold answer among their choices)")
    return TrainingSet(tuple(TrainingExample(prompt, completion) for prompt, completion in rendered.pairs),
                       rendered.source)


# ------------------------------------------------------------------------------------------- tokenisation


def tokenize_example(example: TrainingExample, tokenizer: Any, max_length: int | None = None) -> TokenizedExample:
    """Token ids of one example (module docstring), left-truncated to at most ``max_length`` tokens.

    Truncation drops prompt tokens first; a completion longer than ``max_length - 1`` loses its first tokens
    too (one token must remain before the first predicted one).
    """
    return _tokenized(*encode_pair(tokenizer, example.prompt, example.completion), max_length)


def tokenize_examples(examples: Iterable[TrainingExample], tokenizer: Any, max_length: int | None = None) -> list[TokenizedExample]:
    """``tokenize_example`` over a sequence, in order (one call into lm-eval's tokenising code for all of them)."""
    pairs = [(example.prompt, example.completion) for example in examples]
    return [_tokenized(context_ids, completion_ids, max_length)
            for context_ids, completion_ids in encode_pairs(tokenizer, pairs)]


def _tokenized(context_ids: list[int], completion_ids: list[int], max_length: int | None) -> TokenizedExample:
    ids = np.asarray(context_ids + completion_ids, dtype=np.int64)
    start, cut = len(context_ids), 0
    if max_length is not None and len(ids) > max_length:
        cut = len(ids) - max_length
        ids = ids[cut:]
        start = max(1, start - cut)
    return TokenizedExample(ids, start, cut)


def check_completion_tokens(training: TrainingSet, tokenized: Sequence[TokenizedExample]) -> None:
    """``InputError`` (one line, naming the file and line, or the task example) for the first example without a
    completion token: an empty completion, whitespace the tokenizer drops, or text that merges into the prompt's
    last token. Such a pair has no position to store teacher knowledge for or to train on."""
    for index, (example, tokens) in enumerate(zip(training.examples, tokenized)):
        if tokens.n_completion > 0:
            continue
        text = example.completion
        if text == "":
            problem = EMPTY_COMPLETION
        elif not text.strip():
            problem = (f"completion {text!r} is only whitespace and tokenises to no token; "
                       "every pair needs at least one completion token")
        else:
            problem = (f"completion {text[:40]!r} gives no token of its own (the tokenizer merges it into the "
                       "prompt's last token); every pair needs at least one completion token")
        raise InputError(f"{training.where(index)}: {problem}")


def check_max_length(max_length: int | None) -> None:
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2):
        raise InputError(f"--max-length {max_length!r}: must be a whole number >= 2 (a prompt token and a completion token)")


def completion_counts(tokenized: Sequence[TokenizedExample]) -> np.ndarray:
    """(n,) completion tokens per example."""
    return np.asarray([example.n_completion for example in tokenized], dtype=np.int64)
