"""Model folders as every `first distill` step takes them: ``DIR`` with config.json, or ``DIR/NAME.gguf``.

``locate_model`` turns a path into a ``ModelLocation``; the loaders read its tokenizer, its (text) config
without the weights, or the causal LM itself, and turn every way a folder can be unusable into one
``InputError`` naming the flag it came from.

A GGUF model that is to be trained or re-saved (a student, a cut student) goes through
``load_trainable_model``: its weights are dequantised to plain fp32 tensors and transformers' quantiser
markers are dropped, because the Trainer refuses a model marked quantised and ``save_pretrained`` would
write a ``quantization_config`` that sends lm-eval back to a GGUF file that is not there. ``gguf_source``
is the provenance (path, size, sha256) recorded in place of the file such a model no longer points to.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from first_eval.errors import InputError


@dataclass(frozen=True)
class ModelLocation:
    """A Hugging Face model folder, optionally with the GGUF file inside it to load."""

    folder: Path
    gguf_file: str | None = None

    @property
    def kwargs(self) -> dict[str, str]:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}

    def lm_eval_model_args(self, dtype: str) -> str:
        return f"pretrained={self.folder},dtype={dtype}" + (f",gguf_file={self.gguf_file}" if self.gguf_file else "")


def locate_model(path: str | Path, flag: str) -> ModelLocation:
    """``DIR`` with config.json, or ``DIR/NAME.gguf``; ``InputError`` naming ``flag`` otherwise."""
    path = Path(path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelLocation(path.parent.resolve(), path.name)
    if path.is_dir() and (path / "config.json").is_file():
        return ModelLocation(path.resolve())
    ggufs = sorted(p.name for p in path.glob("*.gguf")) if path.is_dir() else []
    hint = f"; for a GGUF model pass {flag} {path / ggufs[0]}" if ggufs else ""
    what = "no such folder" if not path.exists() else "no config.json" if path.is_dir() else "a file, not a model folder"
    raise InputError(f"{flag} {path}: not a model folder ({what}){hint}")


def load_tokenizer(location: ModelLocation, flag: str) -> Any:
    """The model's tokenizer; ``InputError`` naming ``flag``."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(location.folder), **location.kwargs)
    except Exception as error:  # transformers raises OSError, ValueError, KeyError ... for an unusable folder
        raise InputError(f"{flag} {location.folder}: cannot load its tokenizer ({type(error).__name__}: "
                         f"{' '.join(str(error).split())[:200]})") from None


def load_text_config(location: ModelLocation, flag: str) -> Any:
    """The model's (text) config, read without loading weights; ``InputError`` naming ``flag``."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(location.folder), **location.kwargs)
    except Exception as error:
        raise InputError(f"{flag} {location.folder}: cannot read its config ({type(error).__name__}: "
                         f"{' '.join(str(error).split())[:200]})") from None
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def load_teacher(location: ModelLocation, device: str, dtype: Any) -> Any:
    """The teacher as a causal LM in ``dtype`` on ``device``, in eval mode; ``InputError`` if it cannot load."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(str(location.folder), dtype=dtype, **location.kwargs)
    except Exception as error:
        raise InputError(f"--teacher {location.folder}: cannot load it as a causal LM ({type(error).__name__}: "
                         f"{' '.join(str(error).split())[:200]})") from None
    return model.to(device).eval()


def load_trainable_model(location: ModelLocation, flag: str) -> Any:
    """The causal LM with plain, trainable fp32 weights (train mode, CPU); ``InputError`` naming ``flag``.

    A GGUF file is dequantised on load (``GgufConfig(dequantize=True)`` where transformers has it; older
    versions always dequantise) and every quantiser marker is removed, so the model trains and saves as
    the ordinary model it now is."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = dict(location.kwargs)
    if location.gguf_file:
        try:
            from transformers import GgufConfig
        except ImportError:  # transformers < 5: GGUF weights are always dequantised, no quantiser attached
            pass
        else:
            kwargs["quantization_config"] = GgufConfig(dequantize=True)
    where = location.folder / location.gguf_file if location.gguf_file else location.folder  # what the user passed
    try:
        model = AutoModelForCausalLM.from_pretrained(str(location.folder), dtype=torch.float32, **kwargs)
    except Exception as error:  # as for the config: many exception types mean "not a loadable causal LM"
        raise InputError(f"{flag} {where}: cannot load it as a causal LM ({type(error).__name__}: "
                         f"{' '.join(str(error).split())[:200]})") from None
    _drop_quantization_markers(model)
    packed = sorted({str(p.dtype) for p in model.parameters() if not p.is_floating_point()})
    if packed:
        raise InputError(f"{flag} {where}: its weights stay quantised after loading ({', '.join(packed)}); "
                         "convert it to a Hugging Face model folder to train it")
    return model.to(torch.float32).train()


def _drop_quantization_markers(model: Any) -> None:
    """Forget that the weights came from a quantised file (what Trainer and save_pretrained look at)."""
    configs = {}
    for module in model.modules():
        for name in ("hf_quantizer", "quantization_method"):
            if name in vars(module):
                delattr(module, name)
        if "is_quantized" in vars(module):
            module.is_quantized = False
        config = getattr(module, "config", None)
        if config is not None:
            configs[id(config)] = config
            text = config.get_text_config() if hasattr(config, "get_text_config") else config
            configs[id(text)] = text
    for config in configs.values():
        for name in ("quantization_config", "_is_quantized"):
            if name in vars(config):
                delattr(config, name)


def gguf_source(path: str | Path) -> dict[str, Any] | None:
    """Provenance of a GGUF model file (resolved path, name, size in bytes, sha256); None for anything else.

    A student trained from a GGUF file is saved as a safetensors folder that no longer names the file, so
    this record is what ties the run to the exact bytes it started from."""
    path = Path(path).expanduser()
    if path.suffix != ".gguf" or not path.is_file():
        return None
    path = path.resolve()
    stat = path.stat()
    return {"path": str(path), "name": path.name, "bytes": stat.st_size,
            "sha256": _cached_file_sha256(str(path), stat.st_size, stat.st_mtime_ns)}


@functools.lru_cache(maxsize=8)
def _cached_file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """One read per file version and process (``to_dict`` runs at every settings comparison); keyed by size
    and mtime too, so an edited file is hashed again."""
    from first_distill.store.fingerprint import file_sha256

    return file_sha256(path)


def tokenizer_identity(location: ModelLocation, flag: str) -> tuple[int, str]:
    """(vocabulary size of the logits, sha256 fingerprint of the tokenizer) of a model folder."""
    from first_distill.store.fingerprint import tokenizer_fingerprint

    return int(load_text_config(location, flag).vocab_size), tokenizer_fingerprint(load_tokenizer(location, flag))


def check_same_tokenizer(teacher: tuple[int, str], student: tuple[int, str], where: str) -> None:
    """``InputError`` unless teacher and student (each ``tokenizer_identity``) share vocabulary and token ids.

    ``where``: the flags or folders to name in the message (e.g. ``"--student runs/s"``)."""
    (teacher_vocab, teacher_sha), (student_vocab, student_sha) = teacher, student
    if teacher_vocab != student_vocab:
        raise InputError(f"vocabularies differ: teacher {teacher_vocab} tokens, student {student_vocab} tokens "
                         f"({where}); FIRST needs one tokenizer for teacher and student")
    if teacher_sha != student_sha:
        raise InputError(f"tokenizers differ: teacher sha256 {teacher_sha[:12]}…, student {student_sha[:12]}… (same "
                         f"vocabulary size, different token ids; {where}); FIRST needs one tokenizer for teacher "
                         "and student")
