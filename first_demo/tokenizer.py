"""A small byte-level BPE tokenizer trained on the world's text, saved as a Hugging Face tokenizer.

Byte-level (GPT-2 style) so any string lm-eval passes can be encoded and decoded back exactly.
Special tokens: ``<pad>`` (0), ``<bos>`` (1), ``<eos>`` (2). The post-processor prepends ``<bos>`` to
every encoding (``add_special_tokens=True``, the default lm-eval's HF wrapper relies on) and adds
nothing at the end, so lm-eval's ``whole[len(context):]`` split leaves only the answer's tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

PAD_TOKEN, BOS_TOKEN, EOS_TOKEN = "<pad>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN)


def train_world_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: Path) -> Path:
    """Train byte-level BPE (``vocab_size`` including the 256 bytes and 3 specials) and save to ``out_dir``.

    Returns ``out_dir``; ``AutoTokenizer.from_pretrained(out_dir)`` loads it with bos/eos/pad set.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 256 + len(SPECIAL_TOKENS) + 1:
        raise ValueError(f"vocab_size must exceed the 256 byte symbols + 3 specials; got {vocab_size}")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    bos_id = bpe.token_to_id(BOS_TOKEN)
    bpe.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A", pair=f"{BOS_TOKEN} $A $B", special_tokens=[(BOS_TOKEN, bos_id)]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="right",
        model_max_length=128,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    wrapped.save_pretrained(str(out_dir))
    return out_dir


def load_world_tokenizer(tokenizer_dir: Path):
    """``AutoTokenizer.from_pretrained(tokenizer_dir)`` (transformers imported lazily)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))
