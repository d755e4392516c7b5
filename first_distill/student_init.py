"""An initial student cut from a teacher: its embeddings, first N decoder layers, final norm and head.

``first distill init-student --from TEACHER --layers N --output DIR`` gives a student that shares the teacher's
tokenizer by construction (FIRST needs one vocabulary for both) and starts from the teacher's own lower
layers, so a few hundred steps already train it to something. The logits of the cut model are exactly the
teacher's head applied to the teacher's final norm of its layer-N hidden state (checked in the tests).
The folder is written under a temporary name and renamed, so a kill leaves no half-written model.
"""

from __future__ import annotations

import shutil
from typing import Any
from pathlib import Path

from first_eval.errors import InputError


def truncated_student(source: str | Path, n_layers: int, output: str | Path) -> Path:
    """Save ``source``'s first ``n_layers`` decoder layers (with embeddings, final norm, head) to ``output``."""
    from first_distill.model_folders import load_text_config, load_tokenizer, load_trainable_model, locate_model

    output = Path(output).expanduser()
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
        raise InputError(f"--layers {n_layers!r}: must be a whole number >= 1")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InputError(f"--output {output}: exists and is not an empty folder")
    location = locate_model(source, "--from")
    configured = getattr(load_text_config(location, "--from"), "num_hidden_layers", None)
    if isinstance(configured, int) and n_layers >= configured:  # refused before the weights load
        raise InputError(f"--layers {n_layers}: the model in {source} has {configured} decoder layers; "
                         f"choose fewer than {configured}")
    tokenizer = load_tokenizer(location, "--from")
    model = load_trainable_model(location, "--from")  # a GGUF file: dequantised fp32, saved as safetensors
    layers = _decoder_layers(model, source)
    if n_layers >= len(layers):
        raise InputError(f"--layers {n_layers}: the model in {source} has {len(layers)} decoder layers; "
                         f"choose fewer than {len(layers)}")
    del layers[n_layers:]
    text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    text_config.num_hidden_layers = n_layers
    if isinstance(getattr(text_config, "layer_types", None), list):
        text_config.layer_types = text_config.layer_types[:n_layers]
    partial = output.with_name(f".{output.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        model.save_pretrained(str(partial))
        tokenizer.save_pretrained(str(partial))
    except OSError as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise InputError(f"--output {output}: cannot write the student ({error.strerror or error})") from None
    if output.exists():
        output.rmdir()
    partial.rename(output)
    return output


def _decoder_layers(model: Any, source: Any) -> Any:
    for path in ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers"):
        module = model
        for name in path.split("."):
            module = getattr(module, name, None)
            if module is None:
                break
        if module is not None:
            return module
    raise InputError(f"--from {source}: cannot find the decoder layers of a {type(model).__name__}")
