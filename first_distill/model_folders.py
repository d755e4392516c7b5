"""Model folders as every `first distill` step takes them: ``DIR`` with config.json, or ``DIR/NAME.gguf``.

``locate_model`` turns a path into a ``ModelLocation``; the loaders read its tokenizer, its (text) config
without the weights, or the causal LM itself, and turn every way a folder can be unusable into one
``InputError`` naming the flag it came from.
"""

from __future__ import annotations

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


def tokenizer_identity(location: ModelLocation, flag: str) -> tuple[int, str]:
    """(vocabulary size of the logits, sha256 fingerprint of the tokenizer) of a model folder."""
    from first_distill.knowledge.fingerprint import tokenizer_fingerprint

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
