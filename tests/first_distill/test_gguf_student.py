"""A GGUF file as the student: dequantised to a plain fp32 model, trained, saved as a safetensors folder.

transformers loads GGUF weights dequantised but used to leave its quantiser markers on the model
(``hf_quantizer``, ``is_quantized``, ``config.quantization_config``), so the Trainer refused it ("You cannot
perform fine-tuning on purely quantized models"). The tiny GGUF here is the session's tiny Llama written the
way llama.cpp's converter writes one (tensor names, Q/K row permutation, byte-level BPE vocabulary, Q8_0 blocks
for the matrices), so the real loader runs on a real quantised file in about a second.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from first_distill.model_folders import gguf_source, load_trainable_model, locate_model
from first_distill.student_init import truncated_student
from first_distill.train import CONFIG_FILE, TrainConfig, train_student
from first_distill.trainer import TrainerSettings
from first_eval.errors import InputError
from tiny_models import tiny_llama_dir  # noqa: F401  (session fixture, 2 decoder layers)

PAIRS = [("Question: Which gas do plants take in from the air?\nAnswer:", " carbon dioxide"),
         ("The sun rises in the", " east and sets in the west"), ("Water freezes at", " zero degrees Celsius"),
         ("Which organ pumps blood?", " the heart"), ("Plants make food by", " photosynthesis"),
         ("The moon orbits the", " earth")]
QUANT_MARKERS = ("quantization_config", "_is_quantized")


def _llama_cpp_permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf row order for q/k (rotary halves interleaved); transformers undoes it."""
    return weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:]).swapaxes(1, 2) \
        .reshape(weights.shape)


def write_tiny_gguf(model_dir: Path, path: Path) -> Path:
    """``model_dir`` (a tiny Llama folder) as a llama GGUF file: Q8_0 matrices, F32 norms, its BPE tokenizer."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    config = model.config
    head_dim = config.hidden_size // config.num_attention_heads
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    special = set(tokenizer.all_special_ids)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_types([gguf.TokenType.CONTROL if index in special else gguf.TokenType.NORMAL
                            for _, index in vocab])
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # tied: a GGUF without output.weight ties the head to token_embd
        weights = tensor.numpy()
        if name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = config.num_attention_heads if "q_proj" in name else config.num_key_value_heads
            weights = _llama_cpp_permute(weights, heads)
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if weights.ndim == 2:
            writer.add_tensor(gguf_name, gguf.quants.quantize(weights, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(gguf_name, weights)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory, tiny_llama_dir) -> Path:  # noqa: F811
    pytest.importorskip("gguf")
    folder = tmp_path_factory.mktemp("tiny-gguf")
    return write_tiny_gguf(tiny_llama_dir, folder / "tiny-llama.Q8_0.gguf")


def test_a_gguf_student_trains_and_saves_a_plain_model(tiny_gguf, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in PAIRS), encoding="utf-8")
    (tmp_path / "gguf").mkdir()
    gguf_file = Path(shutil.copy(tiny_gguf, tmp_path / "gguf" / tiny_gguf.name))  # a copy: changed at the end
    initial = load_trainable_model(locate_model(gguf_file, "--student"), "--student")
    assert not getattr(initial, "is_quantized", False) and getattr(initial, "hf_quantizer", None) is None
    assert all(p.dtype == torch.float32 and p.requires_grad for p in initial.parameters())
    settings = TrainerSettings(max_steps=3, batch_size=3, learning_rate=3e-3, warmup_ratio=0.0, lr_scheduler="constant",
                               save_steps=1000, progress=False)
    config = TrainConfig(student=gguf_file, output=tmp_path / "run", variants=("ce",), train=train, settings=settings)
    result = train_student(config)

    (student,) = result.students
    assert student.steps == 3 and student.final_loss is not None and np.isfinite(student.final_loss)
    saved_config = json.loads((student.model_dir / "config.json").read_text())
    assert not set(QUANT_MARKERS) & set(saved_config) and "gguf_file" not in json.dumps(saved_config)
    assert (student.model_dir / "model.safetensors").is_file() and not list(student.model_dir.glob("*.gguf"))
    trained = load_file(str(student.model_dir / "model.safetensors"))
    assert all(tensor.dtype == torch.float32 for tensor in trained.values())
    before = initial.state_dict()
    assert any(not torch.equal(before[name], tensor) for name, tensor in trained.items())  # training moved the weights
    reloaded = AutoModelForCausalLM.from_pretrained(str(student.model_dir))  # lm-eval's pretrained=DIR, no gguf_file
    assert getattr(reloaded, "hf_quantizer", None) is None and not getattr(reloaded, "is_quantized", False)
    ids = torch.tensor([[5, 17, 42, 99]])
    with torch.inference_mode():
        assert torch.isfinite(reloaded(input_ids=ids).logits).all()

    recorded = json.loads((tmp_path / "run" / CONFIG_FILE).read_text())  # the run's record of its student
    assert recorded["student"] == str(gguf_file.resolve())
    assert recorded["student_gguf"] == gguf_source(gguf_file) == {
        "path": str(gguf_file.resolve()), "name": gguf_file.name, "bytes": gguf_file.stat().st_size,
        "sha256": hashlib.sha256(gguf_file.read_bytes()).hexdigest()}
    with gguf_file.open("ab") as handle:  # other bytes under the same name: not the run's student any more
        handle.write(b"\0" * 32)
    with pytest.raises(InputError, match=r"--resume: .*other settings: student_gguf"):
        train_student(dataclasses.replace(config, resume=True))


def test_dequantised_gguf_computes_what_the_source_model_computes(tiny_gguf, tiny_llama_dir):  # noqa: F811
    """An independent oracle for the loader: Q8_0 keeps the source weights to <1%, the logits to <2%."""
    import torch
    from transformers import AutoModelForCausalLM

    source = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32).eval()
    plain = load_trainable_model(locate_model(tiny_gguf, "--student"), "--student").eval()
    ids = torch.tensor([[1, 5, 17, 42, 99, 200, 7]])
    with torch.inference_mode():
        expected, got = source(input_ids=ids).logits, plain(input_ids=ids).logits
    assert (got - expected).abs().max() < 0.02 * expected.abs().max()


def test_init_student_from_a_gguf_saves_a_plain_folder(tiny_gguf, tmp_path):
    """``init-student --from DIR/NAME.gguf`` goes through the same loader (model_folders.load_trainable_model)."""
    from transformers import AutoModelForCausalLM

    folder = truncated_student(tiny_gguf, 1, tmp_path / "cut")
    assert not set(QUANT_MARKERS) & set(json.loads((folder / "config.json").read_text()))
    cut = AutoModelForCausalLM.from_pretrained(str(folder))
    assert len(cut.model.layers) == 1 and getattr(cut, "hf_quantizer", None) is None


def test_a_folder_student_records_no_gguf_source(tiny_llama_dir):  # noqa: F811
    assert gguf_source(tiny_llama_dir) is None
    assert "student_gguf" not in TrainConfig(student=tiny_llama_dir, output=Path("unused"), variants=("ce",),
                                             train=Path("pairs.jsonl")).to_dict()


def test_an_unloadable_gguf_is_one_input_error(tmp_path):
    bad = tmp_path / "m" / "broken.gguf"
    bad.parent.mkdir()
    bad.write_bytes(b"GGUF not really")
    with pytest.raises(InputError, match=r"^--student .*broken\.gguf: cannot load it as a causal LM") as caught:
        load_trainable_model(locate_model(bad, "--student"), "--student")
    assert "\n" not in str(caught.value)
