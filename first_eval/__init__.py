"""first_eval: audit the calibration of language models on multiple-choice tasks."""

__version__ = "0.1.0"
