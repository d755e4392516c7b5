"""A tiny random Llama with a byte-level BPE tokenizer, saved as a Hugging Face model folder (tests only).

``make_tiny_llama(path)`` builds in about a second on CPU; ``AutoModelForCausalLM.from_pretrained(path)``,
``AutoTokenizer.from_pretrained(path)`` and lm-eval's ``hf`` model (``pretrained=path``) load it. The weights
are random (seeded), so its answers are noise, but every lm-eval code path runs for real.

``tiny_llama_dir`` is a session-scoped pytest fixture: ``from tiny_models import tiny_llama_dir``
in a test module (tests/ is on sys.path through its conftest.py) makes it available there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

PAD_TOKEN, BOS_TOKEN, EOS_TOKEN = "<pad>", "<bos>", "<eos>"
ARC_EASY_TRAIN = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "arc_easy" / "train.jsonl"
_FALLBACK_CORPUS = [
    "Question: Which gas do plants take in from the air?\nAnswer: carbon dioxide",
    "The sun rises in the east and sets in the west.",
    "Water freezes at zero degrees Celsius and boils at one hundred.",
    "A magnet sticks to a refrigerator door because the door contains iron.",
    "Is the sky blue on a clear day? yes. Do fish breathe air with lungs? no.",
]


def default_corpus(max_lines: int = 2000) -> list[str]:
    """Questions and choices of arc_easy's train split when the shared data is there, else a few sentences."""
    if not ARC_EASY_TRAIN.is_file():
        return list(_FALLBACK_CORPUS)
    lines = []
    with ARC_EASY_TRAIN.open(encoding="utf-8") as handle:
        for line, _ in zip(handle, range(max_lines)):
            row = json.loads(line)
            lines.append(f"Question: {row['question']}\nAnswer: " + " ".join(row["choices"]["text"]))
    return lines + _FALLBACK_CORPUS


def make_tiny_llama(
    path: Path,
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    corpus: list[str] | None = None,
    vocab_size: int = 512,
    heads: int = 4,
    max_length: int = 2048,
) -> Path:
    """Save a random ``LlamaForCausalLM`` (``layers`` x ``hidden``, ``heads`` heads) and its tokenizer to ``path``.

    The tokenizer is byte-level BPE (GPT-2 style, so every string round-trips) trained on ``corpus``
    with ``vocab_size`` entries including the 256 bytes and ``<pad>``, ``<bos>``, ``<eos>``.
    Returns ``path``.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(path)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD_TOKEN, BOS_TOKEN, EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus if corpus is not None else default_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=max_length,
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_length,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """One tiny random Llama folder shared by the whole test session."""
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama") / "model")


def write_leg_count_pairs(path: Path, n: int) -> Path:
    """``n`` training pairs whose completions grow in length (1-4 words): ragged sequences for extraction tests."""
    rows = [{"prompt": f"Question: how many legs has animal number {i}?\nAnswer:", "completion": " " + "four " * (1 + i % 4)}
            for i in range(n)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path
