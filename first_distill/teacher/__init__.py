"""The teacher steps of FIRST: the teacher's temperature (resolved once, ``TeacherTemperature``), its forward pass
over the training completions, the selection of its top-k (or sampled) tokens per position, and the extraction
driver that writes them into a store (``first_distill.store``), data-parallel under ``accelerate launch``."""
