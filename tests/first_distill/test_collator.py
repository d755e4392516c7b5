"""The collator's alignment: position t's logits predict token t + 1, and store row j of a sequence (its j-th
completion token) lands at the position whose logits predict that token. Checked on a hand-built store and
against the tiny teacher itself (its logits at the loss positions of a collated batch reproduce the store)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from first_distill.collator import (
    IGNORE_INDEX, DistillationCollator, ExampleDataset, next_token_targets, pad_right)
from first_distill.store import KnowledgeStore, KnowledgeStoreWriter
from first_distill.training_data import TokenizedExample, TrainingExample, tokenize_examples
from tiny_models import tiny_llama_dir  # noqa: F401  (session fixture)

VOCAB = 50


def hand_built_store(folder, rows_per_sequence):
    writer = KnowledgeStoreWriter(folder, vocab_size=VOCAB, k=2, tokenizer_sha256="t" * 64, teacher_path="hand",
                                  teacher_config_sha256="c" * 64, temperature=1.0, temperature_source="fixed",
                                  prob_bits=16)
    for index, (ids, probs) in enumerate(rows_per_sequence):
        writer.add(index, np.asarray(ids, dtype=np.int64).reshape(-1, 2), np.asarray(probs, dtype=np.float64).reshape(-1, 2))
    writer.close()
    return KnowledgeStore.open(folder)


def test_store_rows_land_where_their_token_is_predicted(tmp_path):
    # Sequence 0: prompt [1, 10, 11], completion [12, 13] -> rows predict 12 (at position 2) and 13 (position 3).
    # Sequence 1: prompt [1], completion [20, 21] -> rows at positions 0 and 1.
    # Each row's top id is the token it predicts, the second a distinct marker.
    examples = [TokenizedExample(np.array([1, 10, 11, 12, 13]), 3), TokenizedExample(np.array([1, 20, 21]), 1)]
    store = hand_built_store(tmp_path / "store", [
        ([[12, 40], [13, 41]], [[0.7, 0.2], [0.6, 0.3]]),
        ([[20, 42], [21, 43]], [[0.5, 0.4], [0.9, 0.05]]),
    ])
    dataset = ExampleDataset(examples)
    batch = DistillationCollator(pad_token_id=0, store=store)([dataset[1], dataset[0]])  # not in store order

    assert batch["input_ids"].tolist() == [[1, 20, 21, 0, 0], [1, 10, 11, 12, 13]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["sequence_index"].tolist() == [1, 0]
    assert batch["loss_mask"].tolist() == [[True, True, False, False, False], [False, False, True, True, False]]
    assert batch["labels"].tolist() == [[20, 21, -100, -100, -100], [-100, -100, 12, 13, -100]]
    ids, probs = batch["topk_ids"].numpy(), batch["topk_probs"].numpy()
    assert ids.shape == probs.shape == (2, 5, 2)
    assert ids[0, :2].tolist() == [[20, 42], [21, 43]] and ids[1, 2:4].tolist() == [[12, 40], [13, 41]]
    np.testing.assert_allclose(probs[1, 2:4], [[0.7, 0.2], [0.6, 0.3]], atol=1e-3)
    np.testing.assert_allclose(probs[0, :2], [[0.5, 0.4], [0.9, 0.05]], atol=1e-3)
    off = ~batch["loss_mask"].numpy()
    assert (ids[off] == 0).all() and (probs[off] == 0).all()
    # the invariant of this store: the teacher's top token is the label of the same position
    mask = batch["loss_mask"].numpy()
    assert (ids[..., 0][mask] == batch["labels"].numpy()[mask]).all()


def test_targets_against_a_loop():
    rng = np.random.default_rng(0)
    input_ids = rng.integers(0, 100, size=(4, 9))
    completion = rng.random((4, 9)) < 0.5
    labels, loss_mask = next_token_targets(input_ids, completion)
    for b in range(4):
        for t in range(9):
            predicts_completion = t + 1 < 9 and completion[b, t + 1]
            assert loss_mask[b, t] == predicts_completion
            assert labels[b, t] == (input_ids[b, t + 1] if predicts_completion else IGNORE_INDEX)


def test_padding_to_a_multiple_and_no_store():
    features = ExampleDataset([TokenizedExample(np.arange(1, 6), 2), TokenizedExample(np.arange(1, 4), 1)])
    input_ids, attention, completion = pad_right([features[0], features[1]], pad_token_id=7, pad_to_multiple_of=4)
    assert input_ids.shape == (2, 8) and attention.sum(1).tolist() == [5, 3] and (input_ids[1, 3:] == 7).all()
    assert completion.tolist()[1] == [False, True, True] + [False] * 5
    batch = DistillationCollator(pad_token_id=7, pad_to_multiple_of=4)([features[0], features[1]])
    assert set(batch) == {"input_ids", "attention_mask", "labels", "loss_mask", "sequence_index"}
    assert batch["loss_mask"].sum().item() == 3 + 2


def test_a_store_from_other_examples_is_refused(tmp_path):
    store = hand_built_store(tmp_path / "store", [([[12, 40]], [[0.7, 0.2]])])  # one completion position
    example = TokenizedExample(np.array([1, 10, 11, 12]), 2)  # two completion tokens
    with pytest.raises(ValueError, match="1 stored positions but its mask selects 2"):
        DistillationCollator(pad_token_id=0, store=store)([ExampleDataset([example])[0]])


def test_the_teacher_reproduces_the_store_at_the_loss_positions(tmp_path, tiny_llama_dir):  # noqa: F811
    """Independent oracle: run the teacher on the collated (right-padded) batch; at every loss position the
    softmax of its logits gives the stored ids the stored probabilities, and the stored top-1 is its argmax."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from first_distill.teacher.extract import ExtractConfig, extract_knowledge

    pairs = [("Question: Which gas do plants take in from the air?\nAnswer:", " carbon dioxide"),
             ("Q: 2+2?\nA:", " 4"), ("The sun", " rises in the east and sets in the west"), ("x", " y")]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in pairs), encoding="utf-8")
    extract_knowledge(ExtractConfig(teacher=tiny_llama_dir, output=tmp_path / "store", train=train, top_k=5,
                                    teacher_temperature=1.0, prob_bits=16, progress=False, device="cpu", batch_size=2))
    store = KnowledgeStore.open(tmp_path / "store")
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    examples = tokenize_examples([TrainingExample(p, c) for p, c in pairs], tokenizer)
    dataset = ExampleDataset(examples)
    batch = DistillationCollator(tokenizer.pad_token_id, store)([dataset[i] for i in (2, 0, 3, 1)])

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float64).eval()
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, -1)
    mask = batch["loss_mask"]
    assert mask.sum().item() == store.n_positions == sum(e.n_completion for e in examples)
    teacher_probs_of_stored = probs.gather(-1, batch["topk_ids"])[mask]  # (N, k)
    tolerance = float(np.max(store.manifest.identity.quantization["probs"]["max_abs_error"])) + 1e-5
    np.testing.assert_allclose(batch["topk_probs"][mask].numpy(), teacher_probs_of_stored.numpy(), atol=tolerance)
    assert torch.equal(batch["topk_ids"][mask][:, 0], probs[mask].argmax(-1))
