"""Extraction against an independent oracle: the tiny teacher run on each example alone, unpadded, in float64,
softmax(logits / T) over the full vocabulary, then sorted. Plus sampling statistics and determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from first_distill.store import KnowledgeStore
from first_distill.teacher.extract import ExtractConfig, extract_knowledge
from first_distill.teacher.forward import collate_teacher_batch
from first_distill.teacher.selection import tempered_sample, tempered_topk
from first_distill.teacher.windows import plan_windows
from first_distill.training_data import TrainingExample, tokenize_examples
from tiny_models import tiny_llama_dir  # noqa: F401  (session fixture)

# The random tiny teacher is nearly flat: 8-bit codes round most of its probabilities to 0 (warned once, below).
pytestmark = pytest.mark.filterwarnings("ignore:the tempered teacher is flat")

PAIRS = [
    ("Question: Which gas do plants take in from the air?\nAnswer:", " carbon dioxide"),
    ("Question: Is the sky blue? \nAnswer: ", "yes"),
    ("", " The sun rises in the east."),  # empty prompt: lm-eval's BOS stands in
    ("A magnet sticks to a refrigerator door because", " the door contains iron"),
    ("Water freezes at", " zero"),  # (a pair without completion tokens is refused: test_extract_refusals.py)
    ("Q: 2+2?\nA:", " 4"),
    ("Question: What do the green algae supply to the fungi in this symbiotic relationship?\nAnswer:", " food"),
    ("The sun", " rises in the east and sets in the west, every single day of the year"),
    ("x", " y"),
]


def write_pairs(path: Path, pairs=PAIRS) -> Path:
    path.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in pairs), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def teacher(tiny_llama_dir):  # noqa: F811
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float64).eval()
    return model, AutoTokenizer.from_pretrained(str(tiny_llama_dir))


def oracle(teacher, temperature: float, max_length: int | None = None):
    """Per example: the tempered teacher distribution (n_completion, V) float64, one unpadded forward each."""
    import torch

    model, tokenizer = teacher
    examples = tokenize_examples([TrainingExample(p, c) for p, c in PAIRS], tokenizer, max_length)
    distributions = []
    with torch.no_grad():
        for example in examples:
            logits = model(torch.from_numpy(example.input_ids)[None]).logits[0].double()  # (L, V)
            rows = logits[example.completion_start - 1:len(example.input_ids) - 1]
            distributions.append(torch.softmax(rows / temperature, dim=-1).numpy())
    return distributions


def extract(tmp_path, name, teacher_dir, **overrides):
    settings = dict(teacher=teacher_dir, output=tmp_path / name, train=write_pairs(tmp_path / "train.jsonl"),
                    batch_size=3, progress=False, device="cpu")
    settings.update(overrides)
    return extract_knowledge(ExtractConfig(**settings))


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_topk_store_equals_the_unbatched_tempered_teacher(temperature, tmp_path, tiny_llama_dir, teacher):  # noqa: F811
    k = 5
    result = extract(tmp_path, "store", tiny_llama_dir, top_k=k, teacher_temperature=temperature, prob_bits=16)
    expected = oracle(teacher, temperature)
    store = KnowledgeStore.open(result.folder, expect_vocab_size=teacher[0].config.vocab_size)
    errors = np.asarray(store.manifest.identity.quantization["probs"]["max_abs_error"])
    assert store.n_sequences == len(PAIRS) and store.temperature == temperature
    assert store.n_positions == sum(len(q) for q in expected)
    masses = []
    for index, q in enumerate(expected):  # original order, whatever the batches were
        ids, probs = store.sequence(index)
        assert ids.shape == (len(q), k)
        rows = np.arange(len(q))[:, None]
        # the stored probabilities are q_T at the stored ids (fp32 teacher vs float64 oracle + 16-bit codes)
        gap = np.abs(probs - q[rows, ids])  # (T, k) against the per-rank error bound (k,)
        assert np.all(gap <= errors + 2e-6), gap.max()
        # and the stored ids are a top-k of q_T: none is below the k-th largest probability
        kth = np.sort(q, axis=1)[:, -k]
        assert np.all(q[rows, ids] >= kth[:, None] - 2e-6)
        masses.extend(np.sort(q, axis=1)[:, -k:].sum(axis=1))
    # the manifest's mass statistics are those of q_T itself (computed before quantisation)
    assert store.stats["topk_mass"]["mean"] == pytest.approx(np.mean(masses), abs=1e-5)
    extraction = store.stats["extraction"]
    assert extraction["positions_this_run"] == store.n_positions and extraction["positions_per_second"] > 0
    assert store.stats["bytes_per_position"] > 0
    extra = store.manifest.identity.extra
    assert extra["teacher_temperature"]["source"] == "fixed" and extra["training_data"]["n_examples"] == len(PAIRS)


def test_k_equal_to_the_vocabulary_stores_all_the_mass(tmp_path, tiny_llama_dir, teacher):  # noqa: F811
    vocab = teacher[0].config.vocab_size
    result = extract(tmp_path, "full", tiny_llama_dir, top_k=vocab, teacher_temperature="none")
    assert result.teacher_temperature.value == 1.0 and not result.teacher_temperature.enabled
    assert result.manifest.stats["topk_mass"]["min"] == pytest.approx(1.0, abs=1e-5)
    store = KnowledgeStore.open(result.folder)
    assert store.manifest.identity.extra["teacher_temperature"]["enabled"] is False
    ids, probs = store.sequence(0)
    assert sorted(ids[0].tolist()) == list(range(vocab))


@pytest.mark.filterwarnings("default")
def test_a_flat_teacher_at_8_bits_is_warned_about(tmp_path, tiny_llama_dir):  # noqa: F811
    with pytest.warns(UserWarning, match=r"the tempered teacher is flat \(T = 3: .*--prob-bits 16"):
        extract(tmp_path, "flat", tiny_llama_dir, teacher_temperature=3.0)


def test_truncation_matches_the_oracle(tmp_path, tiny_llama_dir, teacher):  # noqa: F811
    result = extract(tmp_path, "short", tiny_llama_dir, top_k=3, teacher_temperature=1.0, max_length=6, prob_bits=16)
    expected = oracle(teacher, 1.0, max_length=6)
    store = KnowledgeStore.open(result.folder)
    for index, q in enumerate(expected):
        ids, probs = store.sequence(index)
        np.testing.assert_allclose(probs, q[np.arange(len(q))[:, None], ids], atol=1e-4)
    assert store.stats["extraction"]["truncated_examples"] >= 3


# -------------------------------------------------------------------------------------------- sampling


def test_sampled_weights_follow_the_teacher(tmp_path, tiny_llama_dir, teacher):  # noqa: F811
    samples, temperature = 400, 0.3
    result = extract(tmp_path, "sample", tiny_llama_dir, selection="sample", samples_per_position=samples,
                     teacher_temperature=temperature, seed=7)
    store = KnowledgeStore.open(result.folder)
    assert store.selection == "sample" and store.k == samples
    expected = oracle(teacher, temperature)
    deviations, variances = [], []
    for index, q in enumerate(expected):
        ids, weights = store.sequence(index)
        counts = weights * samples
        np.testing.assert_allclose(counts, np.rint(counts), atol=1e-3)  # multiples of 1/S
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
        for row in range(len(q)):
            drawn = ids[row][weights[row] > 0]
            assert len(set(drawn.tolist())) == len(drawn)  # distinct ids
            top = int(q[row].argmax())  # E[w_top] = q_top, Var = q_top (1 - q_top) / S
            observed = weights[row][ids[row] == top].sum()
            deviations.append(observed - q[row, top])
            variances.append(q[row, top] * (1 - q[row, top]) / samples)
    z = np.sum(deviations) / np.sqrt(np.sum(variances))
    assert abs(z) < 4.5, z
    assert 0 < store.stats["extraction"]["sampled_teacher_mass_mean"] <= 1


def test_sampling_does_not_depend_on_batching(tmp_path, tiny_llama_dir):  # noqa: F811
    common = dict(selection="sample", samples_per_position=16, teacher_temperature=1.0, seed=3)
    one = extract(tmp_path, "b1", tiny_llama_dir, batch_size=1, **common)
    four = extract(tmp_path, "b4", tiny_llama_dir, batch_size=4, **common)
    other_seed = extract(tmp_path, "seed", tiny_llama_dir, batch_size=4, **{**common, "seed": 4})
    first, second, third = (KnowledgeStore.open(r.folder) for r in (one, four, other_seed))
    for index in range(len(PAIRS)):
        for a, b in zip(first.sequence(index), second.sequence(index)):
            np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(first.sequence(i)[0], third.sequence(i)[0]) for i in range(len(PAIRS)))


def test_tempered_sample_unique_counts_hand_example():
    import torch

    logits = torch.log(torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]) + 1e-30)
    ids, weights, covered = tempered_sample(logits, 1.0, 10, torch.Generator().manual_seed(0))
    assert ids.shape == weights.shape == (2, 10)
    assert set(ids[0][weights[0] > 0].tolist()) <= {0, 1} and weights[0].sum() == pytest.approx(1.0)
    assert ids[1, 0] == 3 and weights[1, 0] == 1.0 and weights[1, 1:].sum() == 0
    assert covered[1] == pytest.approx(1.0)


def test_tempered_topk_equals_softmax_then_topk():
    import torch

    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ids, probs = tempered_topk(logits, 1.7, 4)
    expected = torch.softmax(logits / 1.7, dim=-1).topk(4, dim=-1)
    assert torch.equal(ids, expected.indices)
    torch.testing.assert_close(probs.double(), expected.values, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------- batching


def test_batches_are_sorted_within_aligned_windows(teacher):
    lengths = np.array([5, 9, 3, 7, 7, 2, 8])
    n_completion = np.array([1, 2, 0, 3, 1, 1, 2])
    windows = plan_windows(lengths, n_completion, start=0, batch_size=2)
    assert len(windows) == 1 and (windows[0].first, windows[0].stop) == (0, 7)
    assert [b.tolist() for b in windows[0].batches] == [[1, 6], [3, 4], [0, 5]]  # longest first; index 2 has no completion
    from first_distill.teacher import windows as windows_module

    original = windows_module.WINDOW_BATCHES
    windows_module.WINDOW_BATCHES = 1
    try:
        resumed = plan_windows(lengths, n_completion, start=5, batch_size=2)
    finally:
        windows_module.WINDOW_BATCHES = original
    assert [(w.first, w.stop) for w in resumed] == [(4, 6), (6, 7)]  # starts at the window holding index 5


def test_collated_batch_is_left_padded_with_completions_in_the_last_columns(teacher):
    _, tokenizer = teacher
    examples = tokenize_examples([TrainingExample("Question: Is the sky blue?\nAnswer:", " yes it is"),
                                  TrainingExample("Q:", " 4")], tokenizer)
    batch = collate_teacher_batch(examples, [0, 1], pad_id=0)
    long, short = examples
    assert batch.input_ids.shape == (2, len(long.input_ids) - 1)
    assert batch.input_ids[0].tolist() == long.input_ids[:-1].tolist()
    assert batch.input_ids[1, -(len(short.input_ids) - 1):].tolist() == short.input_ids[:-1].tolist()
    assert batch.attention_mask[1].sum() == len(short.input_ids) - 1
    assert batch.position_ids[1, -1] == len(short.input_ids) - 2
    assert batch.keep.sum(dim=1).tolist() == [long.n_completion, short.n_completion]
