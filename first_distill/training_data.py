"""Training examples for distillation: (prompt, completion) text pairs and their token ids.

Two sources, one value (``TrainingSet``):

- a JSONL file, one ``{"prompt": ..., "completion": ...}`` object per line (``read_training_jsonl``);
- the training split of an lm-eval multiple-choice task (``task_training_set``), rendered by lm-eval's own
  task object exactly as an evaluation request: the prompt is ``task.fewshot_context(doc, num_fewshot=0)``
  (description, ``doc_to_text``, ``gen_prefix``), the completion is ``target_delimiter + gold choice`` taken
  from ``task.construct_requests`` at the gold index (``doc_to_target`` as an index or a choice string,
  as lm-eval's ``process_results`` reads it). So a student trains on the very strings lm-eval scores.

Tokenisation (``tokenize_example``) mirrors lm-eval's ``TemplateLM._encode_pair`` for causal models:
trailing whitespace of the context moves to the continuation, ``whole = encode(context + continuation)``,
``context_ids = encode(context)`` and the completion is ``whole[len(context_ids):]``. ``encode`` adds
special tokens exactly when lm-eval 0.4.13's HF wrapper does by default: the tokenizer's own default
(``add_special_tokens=True``: a BOS for Llama-style tokenizers, nothing for GPT-2-style ones), except for
a string that already starts with the BOS text. An empty prompt is lm-eval's prefix token (BOS, else
EOS). Only completion tokens carry teacher knowledge and loss.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from first_eval.errors import InputError

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
    """The training split of lm-eval multiple-choice task ``task``, rendered by lm-eval (module docstring).

    ``data_dir``: read ``DIR/<task>/<training_split>.jsonl`` (the Hugging Face schema the task expects) instead
    of the task's dataset; ``include_path``: a folder of extra task YAMLs. Offline either way. ``limit``: the
    first N documents only. Documents whose gold index lies outside their choices are skipped (lm-eval scores
    them as wrong). ``split_key``: the task's split to render (``training_split``, or ``validation_split``
    for the questions a token-level teacher temperature is fitted on). ``chat_tokenizer``: render prompts with this
    tokenizer's chat template, as lm-eval's ``--apply_chat_template`` does (HFLM's ``apply_chat_template``);
    ``system_instruction``: lm-eval's ``--system_instruction``. Raises ``InputError`` for an unknown or non-multiple-choice task, a task without a
    training split, a missing file or an empty split.
    """
    from first_eval.lm_eval_bridge.live import HF_HOME_FOLDER
    from first_eval.lm_eval_bridge.local_tasks import plan_local_tasks, write_local_tasks
    from first_eval.lm_eval_bridge.offline import offline_hf, quiet_lm_eval_logging
    from first_eval.lm_eval_bridge.task_lookup import find_task_definitions, require_multiple_choice

    include_paths = [Path(include_path).expanduser()] if include_path is not None else []
    for folder in include_paths:
        if not folder.is_dir():
            raise InputError(f"--include-path {folder}: no such folder")
    definitions = find_task_definitions([task], include_paths)
    if [d.name for d in definitions[task]] != [task]:
        members = ", ".join(d.name for d in definitions[task]) or "none found"
        raise InputError(f"--train-task {task!r} is a group or tag of tasks; name one task ({members})")
    require_multiple_choice(definitions)
    definition = definitions[task][0]
    split = definition.config.get(split_key)
    if not split:
        raise InputError(f"--train-task {task}: the task declares no {split_key} ({definition.yaml_path}); "
                         + ("give the training pairs as --train FILE.jsonl" if split_key == "training_split"
                            else "pass --teacher-temperature FLOAT"))
    with tempfile.TemporaryDirectory(prefix="first-train-task-") as scratch:
        # A variant of the task that evaluates its training split, so only that split's data is needed.
        variant_dir = Path(scratch) / "variant"
        write_task_variant(definition.yaml_path, task, variant_dir, {
            "test_split": split, "training_split": split, "validation_split": None, "fewshot_split": split, "fewshot_config": None})
        task_folder = variant_dir
        data_files = None
        if data_dir is not None:
            local = plan_local_tasks(find_task_definitions([task], [variant_dir]), Path(data_dir),
                                     Path(scratch) / "local", num_fewshot=0)
            write_local_tasks(local, Path(scratch) / "local")
            task_folder, data_files = Path(scratch) / "local", {s: str(p) for s, p in local[0].data_files.items()}
        with offline_hf(Path(scratch) / HF_HOME_FOLDER), quiet_lm_eval_logging(False):
            task_object = _load_task(task, task_folder)
            docs = list(task_object.test_docs() or [])  # the variant's test split is the requested one
            if limit is not None:
                docs = docs[:limit]
            chat = _chat_template_of(chat_tokenizer) if chat_tokenizer is not None else None
            examples = [example for index, doc in enumerate(docs)
                        if (example := render_task_doc(task_object, doc, index, chat, system_instruction))]
    if not examples:
        raise InputError(f"--train-task {task}: empty training set ({len(docs)} document(s) in split {split!r} "
                         "with a gold answer among their choices)")
    source = {"kind": "lm-eval task", "task": task, "split": split, "task_yaml": str(definition.yaml_path),
              "data_files": data_files, "skipped_documents": len(docs) - len(examples), "limit": limit,
              "target_delimiter": task_object.config.target_delimiter,
              "apply_chat_template": chat_tokenizer is not None, "system_instruction": system_instruction}
    return TrainingSet(tuple(examples), source)


def write_task_variant(source_yaml: Path, task: str, folder: Path, overrides: dict[str, Any]) -> Path:
    """Write ``folder/<task>.yaml``: ``include:`` lm-eval's ``source_yaml``, keep the name, override some keys."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{''.join(c if c.isalnum() or c in '-_.' else '_' for c in task)}.yaml"
    body = {"include": str(Path(source_yaml).resolve()), "task": task, **overrides}
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def _load_task(task: str, folder: Path) -> Any:
    from first_eval.lm_eval_bridge.task_loading import load_task_objects

    return load_task_objects([task], [folder], include_defaults=False,
                             failure=f"--train-task {task}: lm-eval could not build the task's training split offline",
                             hint=f"pass --data-dir DIR with DIR/{task}/<split>.jsonl")[task]


def _chat_template_of(tokenizer: Any) -> Any:
    """lm-eval's ``HFLM.apply_chat_template`` for ``tokenizer`` (the callable its requests are rendered with)."""

    def apply_chat_template(chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return tokenizer.apply_chat_template(chat_history, tokenize=False, add_generation_prompt=add_generation_prompt,
                                             continue_final_message=not add_generation_prompt)

    return apply_chat_template


def render_task_doc(task: Any, doc: dict, doc_id: int = 0, chat_template: Any = None,
                    system_instruction: str | None = None) -> TrainingExample | None:
    """lm-eval's 0-shot request for ``doc`` at its gold choice, as (prompt, completion); None without a valid gold.

    ``chat_template``: the callable lm-eval renders chat prompts with (``--apply_chat_template``), or None."""
    context = task.fewshot_context(doc=doc, num_fewshot=0, gen_prefix=task.doc_to_prefix(doc),
                                   system_instruction=system_instruction, apply_chat_template=chat_template is not None,
                                   chat_template=chat_template)
    requests = task.construct_requests(doc=doc, ctx=context, metadata=(task.config.task, doc_id, 1),
                                       apply_chat_template=chat_template is not None, chat_template=chat_template)
    n_choices = len(task.doc_to_choice(doc))
    gold = task.doc_to_text(doc) if task.multiple_input else task.doc_to_target(doc)
    if isinstance(gold, list):  # several acceptable answers: train on the first
        gold = gold[0] if gold else None
    if isinstance(gold, str):
        choices = task.doc_to_choice(doc)
        gold = choices.index(gold) if gold in choices else None
    if not isinstance(gold, (int, np.integer)) or not 0 <= gold < n_choices:
        return None
    prompt, completion = requests[int(gold)].args[:2]
    return TrainingExample(prompt, completion)


# ------------------------------------------------------------------------------------------- tokenisation


def encode_like_lm_eval(tokenizer: Any, text: str) -> list[int]:
    """``HFLM.tok_encode(text)`` with lm-eval's defaults: the tokenizer's own special tokens, none if ``text`` starts with BOS."""
    bos = tokenizer.bos_token
    if bos and text.startswith(bos):
        return list(tokenizer.encode(text, add_special_tokens=False))
    return list(tokenizer.encode(text))


def prefix_token_id(tokenizer: Any) -> int:
    """lm-eval's context for an empty prompt: BOS, else EOS."""
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if token is None:
        raise InputError("an example has an empty prompt, but the tokenizer has neither a BOS nor an EOS token to stand in")
    return int(token)


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context_ids, continuation_ids) as lm-eval's ``TemplateLM.loglikelihood`` / ``_encode_pair`` make them."""
    if context == "":
        continuation_ids = list(tokenizer.encode(continuation, add_special_tokens=False))
        prefix = prefix_token_id(tokenizer)
        if continuation_ids and continuation_ids[0] == prefix:
            return continuation_ids[:1], continuation_ids[1:]
        return [prefix], continuation_ids
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = encode_like_lm_eval(tokenizer, context + continuation)
    context_ids = encode_like_lm_eval(tokenizer, context)
    return context_ids, whole[len(context_ids):]


def tokenize_example(example: TrainingExample, tokenizer: Any, max_length: int | None = None) -> TokenizedExample:
    """Token ids of one example (module docstring), left-truncated to at most ``max_length`` tokens.

    Truncation drops prompt tokens first; a completion longer than ``max_length - 1`` loses its first tokens
    too (one token must remain before the first predicted one).
    """
    context_ids, completion_ids = encode_pair(tokenizer, example.prompt, example.completion)
    ids = np.asarray(context_ids + completion_ids, dtype=np.int64)
    start, cut = len(context_ids), 0
    if max_length is not None and len(ids) > max_length:
        cut = len(ids) - max_length
        ids = ids[cut:]
        start = max(1, start - cut)
    return TokenizedExample(ids, start, cut)


def tokenize_examples(examples: Iterable[TrainingExample], tokenizer: Any, max_length: int | None = None) -> list[TokenizedExample]:
    """``tokenize_example`` over a sequence, in order."""
    return [tokenize_example(example, tokenizer, max_length) for example in examples]


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
