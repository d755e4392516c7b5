"""The built-in demo world: synthetic multiple-choice tasks with a known Bayes posterior, a BPE tokenizer,
two small base Llama models and an over-confident fine-tuned teacher, cached by seed (``build_world``),
and the ``first demo`` pipeline that audits them (``pipeline.run_demo``)."""

from first_demo.build import build_world, find_complete_world
from first_demo.config import WorldConfig
from first_demo.world import DemoWorld

__all__ = ["DemoWorld", "WorldConfig", "build_world", "find_complete_world"]
