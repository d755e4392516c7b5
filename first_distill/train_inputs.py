"""What ``train_student`` reads and checks before training: the knowledge stores (against the student's tokenizer,
their kind and the training pairs, position by position), the online teacher of ``full-kd`` and its temperature,
the tokenised length and the training pairs. ``config`` is a ``first_distill.train.TrainConfig`` throughout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from first_distill.model_folders import load_text_config
from first_distill.variants import ONLINE_TEACHER, SAMPLED, TEMPERED_TOPK, UNTEMPERED_TOPK, knowledge_needed
from first_eval.errors import InputError


def knowledge_label(kind: str) -> str:
    """How a message names what a variant needs: ``the tempered-topk store`` or ``the teacher`` (full-kd)."""
    return "the teacher (online, for full-kd)" if kind == ONLINE_TEACHER else f"the {kind} store"


def open_stores(config: Any, variants: tuple, vocab_size: int, tokenizer_sha256: str) -> dict:
    """{kind: KnowledgeStore} for the stores the variants need, each checked against the student and its kind."""
    from first_distill.store import KnowledgeStore

    stores = {}
    for kind in knowledge_needed(variants):
        if kind == ONLINE_TEACHER:
            continue
        path = Path(config.stores[kind]).expanduser()
        flag = f"{kind} store"
        try:
            store = KnowledgeStore.open(path, expect_vocab_size=vocab_size, expect_tokenizer_sha256=tokenizer_sha256)
        except InputError as error:
            raise InputError(f"{flag} {path}: {error}") from None
        wanted_selection = "sample" if kind == SAMPLED else "topk"
        if store.selection != wanted_selection:
            raise InputError(f"{flag} {path}: a {store.selection!r} store, but {kind.replace('-', ' ')} knowledge needs "
                             f"one extracted with --selection {wanted_selection}")
        if kind == UNTEMPERED_TOPK and store.temperature != 1.0:
            raise InputError(f"{flag} {path}: extracted at T = {store.temperature:g}; topk-notemp needs an untempered "
                             "store (extract with --teacher-temperature none)")
        stores[kind] = store
    return stores


def recorded_max_length(store: Any) -> int | None:
    value = (store.manifest.identity.extra.get("tokenization") or {}).get("max_length")
    return int(value) if value is not None else None


def training_max_length(config: Any, stores: dict, student_location: Any) -> int:
    """The explicit --max-length, else the one all stores were extracted with, else the student's context."""
    recorded = {kind: length for kind, store in stores.items() if (length := recorded_max_length(store)) is not None}
    if len(set(recorded.values())) > 1:
        detail = ", ".join(f"{kind} store {length}" for kind, length in recorded.items())
        raise InputError(f"the knowledge stores were extracted with different --max-length values ({detail})")
    if config.max_length is not None:
        for kind, length in recorded.items():
            if length != config.max_length:
                raise InputError(f"--max-length {config.max_length} differs from the {length} that the {kind} store "
                                 "was extracted with; leave --max-length out to use the store's")
        return config.max_length
    if recorded:
        return next(iter(recorded.values()))
    return int(getattr(load_text_config(student_location, "--student"), "max_position_embeddings", None) or 2048)


def check_alignment(stores: dict, examples: list, training: Any, max_length: int) -> None:
    """Every store holds one sequence per example with one row per completion token (InputError otherwise)."""
    for kind, store in stores.items():
        flag = f"{kind} store {store.folder}"
        recorded = store.manifest.identity.extra.get("training_data") or {}
        ours = training.to_dict()
        if recorded.get("sha256") and ours.get("sha256") and recorded["sha256"] != ours["sha256"]:
            raise InputError(f"{flag}: extracted from training file {recorded.get('path')} (sha256 "
                             f"{recorded['sha256'][:12]}…), not from {ours.get('path')}; pass the same --train")
        if store.n_sequences != len(examples):
            raise InputError(f"{flag}: holds {store.n_sequences} sequences but the training data has {len(examples)} "
                             "examples; extract the store from the same --train/--train-task and --limit")
        for index, example in enumerate(examples):
            stored = store.sequence_length(index)
            if stored != example.n_completion:
                raise InputError(f"{flag}: sequence {index} holds {stored} positions but example {index} has "
                                 f"{example.n_completion} completion tokens (max_length {max_length}); the store was "
                                 "extracted from other training data or another --max-length")


def check_teacher(config: Any, vocab_size: int, tokenizer_sha256: str) -> Any:
    """The online teacher of ``full-kd``, checked to share the student's tokenizer."""
    from first_distill.model_folders import check_same_tokenizer, locate_model, tokenizer_identity

    location = locate_model(config.teacher, "--teacher")
    check_same_tokenizer(tokenizer_identity(location, "--teacher"), (vocab_size, tokenizer_sha256),
                         f"--teacher {config.teacher}, --student {config.student}")
    return location


def full_kd_temperature(config: Any, stores: dict) -> float:
    if config.teacher_temperature is not None:
        return float(config.teacher_temperature)
    for kind in (TEMPERED_TOPK, SAMPLED):
        if kind in stores:
            return float(stores[kind].temperature)
        path = config.stores.get(kind)
        if path is not None:  # given but needed by no other variant (full-kd alone): only its T is read
            from first_distill.store import KnowledgeStore

            try:
                return float(KnowledgeStore.open(Path(path).expanduser()).temperature)
            except InputError as error:
                raise InputError(f"{kind} store {path}: {error}") from None
    raise InputError("full-kd needs the teacher temperature: give teacher_temperature, or a tempered-topk or sampled "
                     "store to use the T it was extracted with")


def load_training(config: Any) -> Any:
    from first_distill.training_data import read_training_jsonl

    return read_training_jsonl(config.train).first(config.train_limit)
