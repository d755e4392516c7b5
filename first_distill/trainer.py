"""The student trainer: ``transformers.Trainer`` with the loss of a variant, crash-safe checkpoints, a loss log.

``DistillationTrainer.compute_loss`` runs the student (and, for ``full-kd``, the teacher under no_grad) on a
collated batch (first_distill/collator.py) and returns ``variant.compute_loss(...)``: a pure loss from
first_distill/losses/, the mean over the batch's loss positions. Everything else — the optimiser, the
schedule, gradient accumulation, mixed precision, gradient checkpointing, DDP / FSDP / DeepSpeed under
``accelerate launch`` or ``torchrun``, resuming — is the stock Trainer's. With gradient accumulation the
Trainer divides each micro-batch mean by the number of micro-batches (``loss_is_scaled_for_ga = False``).

Checkpoints are written under ``<output_dir>/.staging/checkpoint-N`` and renamed to
``<output_dir>/checkpoint-N`` only when complete (after every process has written its part), so a folder
named ``checkpoint-N`` — what ``resume_from_checkpoint`` looks for — is always whole. An ``OSError`` while
saving (a full disk) removes the partial copy and becomes one ``InputError`` line.

``TrainingLogCallback`` writes the per-step training loss (``training_log.json``) at every checkpoint and at
the end; the Trainer restores its history from a checkpoint, so a resumed run's curve is complete. Likewise
``tokens_seen`` counts the whole run: each checkpoint records it in ``trainer_state.json``
(``num_input_tokens_seen``) and a resumed run starts counting from there.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from first_distill.store.manifest import fsync_folder, write_json_atomically
from first_distill.variants import ONLINE_TEACHER, Variant
from first_eval.errors import InputError
from first_eval.setting_checks import choice_problem, number_problem, require, whole_number_problem

if TYPE_CHECKING:
    from transformers import TrainingArguments

STAGING_DIR = ".staging"
LR_SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial",
                 "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay")


# The `first distill` flag of each setting that has one (messages name what the user typed).
FLAGS = {"epochs": "--epochs", "max_steps": "--max-steps", "batch_size": "--batch-size",
         "gradient_accumulation_steps": "--grad-accum", "learning_rate": "--lr", "seed": "--seed",
         "save_steps": "--save-steps"}


@dataclass(frozen=True)
class TrainerSettings:
    """Optimisation settings shared by every variant of a run (same schedule, same data order).

    Attributes:
        epochs: passes over the training examples (ignored when ``max_steps`` is set).
        max_steps: optimiser steps in total, overriding ``epochs``.
        batch_size: examples per device per micro-batch.
        gradient_accumulation_steps: micro-batches per optimiser step.
        learning_rate: peak learning rate (AdamW). lr_scheduler: a transformers schedule name.
        warmup_ratio: fraction of the steps spent warming up linearly, in [0, 1).
        weight_decay: AdamW weight decay. max_grad_norm: gradient clipping norm.
        seed: seeds the data order, the initial RNG state and dropout; the same seed gives the same student.
        bf16: bf16 mixed precision; None = when a CUDA GPU supports it.
        gradient_checkpointing: recompute activations in backward (less memory, ~30% more compute).
        save_steps: a checkpoint every N optimiser steps. save_total_limit: checkpoints kept (None: all).
        use_cpu: train on CPU even when a GPU is present (always on CPU without CUDA).
        progress: show the Trainer's progress bar.
        pad_to_multiple_of: round padded batch length up to a multiple of N (e.g. 8 for tensor cores).
    """

    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-5
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    bf16: bool | None = None
    gradient_checkpointing: bool = False
    save_steps: int = 500
    save_total_limit: int | None = 2
    use_cpu: bool = False
    progress: bool = True
    pad_to_multiple_of: int | None = None

    def __post_init__(self) -> None:
        require(*self.problems())

    def problems(self) -> list[str]:
        """Every invalid setting, one message each (empty when all are fine), named by its `first distill` flag
        where it has one (``--batch-size 0``), else by its field (``warmup_ratio 1.0``)."""
        flag = {name: FLAGS.get(name, name) for name in self.__dataclass_fields__}
        found = [whole_number_problem(getattr(self, name), flag[name]) for name in
                 ("batch_size", "gradient_accumulation_steps", "save_steps")]
        found += [whole_number_problem(getattr(self, name), flag[name], optional=True) for name in
                  ("max_steps", "save_total_limit", "pad_to_multiple_of")]
        found.append(whole_number_problem(self.seed, flag["seed"], low=0))
        found += [number_problem(getattr(self, name), flag[name], 0, low_open=True) for name in ("epochs", "learning_rate")]
        found += [number_problem(getattr(self, name), flag[name], 0) for name in ("weight_decay", "max_grad_norm")]
        found.append(number_problem(self.warmup_ratio, flag["warmup_ratio"], 0, 1, high_open=True))
        found.append(choice_problem(self.lr_scheduler, flag["lr_scheduler"], LR_SCHEDULERS))
        return [problem for problem in found if problem]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def training_arguments(self, output_dir: str | Path) -> "TrainingArguments":
        """``transformers.TrainingArguments`` for these settings, checkpoints under ``output_dir``."""
        import torch
        from transformers import TrainingArguments

        cuda = torch.cuda.is_available() and not self.use_cpu
        bf16 = self.bf16 if self.bf16 is not None else bool(cuda and torch.cuda.is_bf16_supported())
        if bf16 and not cuda:
            raise InputError("bf16 needs a CUDA GPU (none is available, or use_cpu is set); leave bf16 unset on CPU")
        wanted = dict(
            output_dir=str(output_dir), num_train_epochs=float(self.epochs),
            max_steps=self.max_steps if self.max_steps is not None else -1,
            per_device_train_batch_size=self.batch_size, gradient_accumulation_steps=self.gradient_accumulation_steps,
            learning_rate=float(self.learning_rate), lr_scheduler_type=self.lr_scheduler,
            weight_decay=float(self.weight_decay), max_grad_norm=float(self.max_grad_norm),
            seed=self.seed, data_seed=self.seed, bf16=bf16,
            save_strategy="steps", save_steps=self.save_steps, save_total_limit=self.save_total_limit,
            logging_strategy="steps", logging_steps=1, report_to=[], dataloader_num_workers=0,
            dataloader_pin_memory=cuda, use_cpu=not cuda, disable_tqdm=not self.progress, save_safetensors=True,
            remove_unused_columns=False, ddp_find_unused_parameters=False)
        accepted = {field.name for field in dataclasses.fields(TrainingArguments)}
        # transformers 5 renamed gradient_checkpointing to activation_checkpointing (the old name warns)
        checkpointing = "activation_checkpointing" if "activation_checkpointing" in accepted else "gradient_checkpointing"
        wanted[checkpointing] = self.gradient_checkpointing
        wanted[f"{checkpointing}_kwargs"] = {"use_reentrant": False} if self.gradient_checkpointing else None
        # transformers 5 folded warmup_ratio into warmup_steps (a float < 1 is a ratio) and always saves safetensors
        if "warmup_ratio" in accepted:
            wanted["warmup_ratio"] = float(self.warmup_ratio)
        else:
            wanted["warmup_steps"] = float(self.warmup_ratio)
        return TrainingArguments(**{key: value for key, value in wanted.items() if key in accepted})


def training_log(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-step training entries of ``Trainer.state.log_history``: step, loss, learning_rate, grad_norm, epoch."""
    keys = ("step", "loss", "learning_rate", "grad_norm", "epoch")
    return [{key: entry.get(key) for key in keys} for entry in log_history if "loss" in entry]


def save_error_message(error: OSError, what: str, where: str | Path) -> str:
    """One line for an ``OSError`` while saving ``what`` into ``where`` (a full disk gets its own advice)."""
    reason = error.strerror or str(error) or type(error).__name__
    if error.errno == errno.ENOSPC:
        return (f"no space left on the device while saving {what} to {where} ({reason}); the partial copy was "
                "removed; free some space (or choose another --output) and rerun with --resume")
    return f"could not save {what} to {where} ({reason}); the partial copy was removed"


@functools.lru_cache(maxsize=None)
def _trainer_classes():
    """(DistillationTrainer, TrainingLogCallback, LossProgressCallback), built once on first use (transformers is
    imported lazily: importing this module stays cheap)."""
    import torch
    from transformers import Trainer, TrainerCallback

    class LossProgressCallback(TrainerCallback):
        """The training bar (first_eval.progress, the one bar of every `first` step): steps done of max_steps,
        tokens/s, the latest loss; main process only."""

        def __init__(self):
            self._bar = None
            self._handle = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                from first_eval.progress import progress_bar

                self._bar = progress_bar(state.max_steps, "training", unit="steps")
                self._handle = self._bar.__enter__()
                if state.global_step:
                    self._handle.advance(state.global_step, note="resumed")

        def on_step_end(self, args, state, control, **kwargs):
            if self._handle is not None:
                self._handle.advance(1)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self._handle is not None and logs and "loss" in logs:
                self._handle.advance(0, note=f"loss {float(logs['loss']):.4g}")

        def on_train_end(self, args, state, control, **kwargs):
            if self._bar is not None:
                self._bar.__exit__(None, None, None)
                self._bar = self._handle = None

    class TrainingLogCallback(TrainerCallback):
        """Writes the loss log to ``path`` (main process) at each checkpoint and at the end:
        ``{"variant", "global_step", "max_steps", "steps": training_log(state.log_history)}``."""

        def __init__(self, path: str | Path, variant: str = ""):
            self.path = Path(path)
            self.variant = variant

        def _write(self, state) -> None:
            if state.is_world_process_zero:
                write_json_atomically(self.path, {"variant": self.variant, "global_step": state.global_step,
                                                  "max_steps": state.max_steps, "steps": training_log(state.log_history)})

        def on_save(self, args, state, control, **kwargs):
            self._write(state)

        def on_train_end(self, args, state, control, **kwargs):
            self._write(state)

    class TokenCountCallback(TrainerCallback):
        """Restores ``trainer.tokens_seen`` when training (re)starts: the state loaded from a checkpoint holds the
        count that ``DistillationTrainer._save_checkpoint`` stored (0 for a fresh run)."""

        def __init__(self, trainer):
            self.trainer = trainer

        def on_train_begin(self, args, state, control, **kwargs):
            self.trainer.tokens_seen = self.trainer.tokens_at_start = int(getattr(state, "num_input_tokens_seen", 0) or 0)

    class DistillationTrainer(Trainer):
        """``Trainer`` whose loss is ``variant.compute_loss`` (module docstring).

        Extra arguments: ``variant`` (first_distill.variants.Variant), ``teacher`` (a causal LM, for variants
        that need an online teacher; moved to the training device, frozen), ``teacher_temperature``.
        ``tokens_seen``: non-padding input tokens of the training micro-batches this process has run, over the
        whole run: a resumed run starts from the count saved in its checkpoint (``tokens_at_start``).
        """

        loss_is_scaled_for_ga = False  # compute_loss returns a per-micro-batch mean

        def __init__(self, *args, variant: Variant, teacher: Any = None, teacher_temperature: float = 1.0, **kwargs):
            super().__init__(*args, **kwargs)
            if variant.knowledge == ONLINE_TEACHER and teacher is None:
                raise ValueError(f"variant {variant.name!r} needs an online teacher model")
            self.variant = variant
            self.teacher_temperature = float(teacher_temperature)
            self.teacher = None
            if teacher is not None:
                self.teacher = teacher.to(self.args.device).eval().requires_grad_(False)
            # Older transformers decide GA scaling from this flag instead of loss_is_scaled_for_ga.
            self.model_accepts_loss_kwargs = False
            self.tokens_seen = 0
            self.tokens_at_start = 0
            self._staging_dir: str | None = None
            self.add_callback(TokenCountCallback(self))

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
            teacher_logits = None
            if self.teacher is not None:
                with torch.no_grad():
                    teacher_logits = self.teacher(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                                  use_cache=False).logits  # (B, T, V)
            loss = self.variant.compute_loss(outputs.logits, inputs, teacher_logits, self.teacher_temperature)
            if model.training:
                self.tokens_seen = self.tokens_seen + inputs["attention_mask"].sum()  # a tensor: no device sync
            return (loss, outputs) if return_outputs else loss

        # ----------------------------------------------------------------- crash-safe checkpoints

        def _get_output_dir(self, trial):
            return self._staging_dir or super()._get_output_dir(trial)

        def _save_checkpoint(self, model, trial):
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            run_dir = super()._get_output_dir(trial)
            name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            # saved in trainer_state.json; the stock Trainer leaves this field alone unless told to count tokens
            self.state.num_input_tokens_seen = int(self.tokens_seen)
            staging = os.path.join(run_dir, STAGING_DIR)
            self._staging_dir = staging
            try:
                super()._save_checkpoint(model, trial)  # everything lands in staging/checkpoint-N
            except OSError as error:
                if self.args.should_save:
                    shutil.rmtree(staging, ignore_errors=True)
                raise InputError(save_error_message(error, name, run_dir)) from None
            finally:
                self._staging_dir = None
            self.accelerator.wait_for_everyone()  # every process has written its shard / RNG state
            if self.args.should_save:
                final = os.path.join(run_dir, name)
                if os.path.isdir(final):  # the same step saved again (a resumed run at its last step)
                    shutil.rmtree(final)
                os.replace(os.path.join(staging, name), final)
                fsync_folder(Path(run_dir))
                shutil.rmtree(staging, ignore_errors=True)
                _rotate(self, run_dir)
            self.accelerator.wait_for_everyone()

    return DistillationTrainer, TrainingLogCallback, LossProgressCallback


def _rotate(trainer: Any, run_dir: str) -> None:
    """Keep the newest ``save_total_limit`` complete checkpoints."""
    try:
        from transformers.trainer_utils import rotate_checkpoints
    except ImportError:  # transformers 4: a Trainer method
        trainer._rotate_checkpoints(use_mtime=False, output_dir=run_dir)
        return
    rotate_checkpoints(output_dir=run_dir, save_total_limit=trainer.args.save_total_limit,
                       best_model_checkpoint=trainer.state.best_model_checkpoint, use_mtime=False)


def save_final_model(trainer: Any, model_dir: str | Path) -> Path:
    """``trainer.save_model`` (safetensors weights, config, tokenizer) into ``.<name>.tmp`` beside ``model_dir``,
    renamed to ``model_dir`` once complete; an ``OSError`` removes the partial copy and raises ``InputError``."""
    model_dir = Path(model_dir)
    staging = model_dir.with_name(f".{model_dir.name}.tmp")
    if trainer.args.should_save and staging.exists():
        shutil.rmtree(staging)
    model_config = getattr(trainer.accelerator.unwrap_model(trainer.model), "config", None)
    if model_config is not None and hasattr(model_config, "use_cache"):
        model_config.use_cache = True  # the Trainer turns the KV cache off for training; generation wants it
    try:
        trainer.save_model(str(staging))  # every process: FSDP / DeepSpeed gather the full weights
    except OSError as error:
        if trainer.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)
        raise InputError(save_error_message(error, "the trained student", model_dir)) from None
    trainer.accelerator.wait_for_everyone()
    if trainer.args.should_save:
        if model_dir.exists():
            shutil.rmtree(model_dir)
        os.replace(staging, model_dir)
        fsync_folder(model_dir.parent)
    trainer.accelerator.wait_for_everyone()
    return model_dir


def __getattr__(name: str) -> Any:
    """``DistillationTrainer`` and ``TrainingLogCallback`` as module attributes, created on first access."""
    if name == "DistillationTrainer":
        return _trainer_classes()[0]
    if name == "TrainingLogCallback":
        return _trainer_classes()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_trainer(*, model: Any, args: "TrainingArguments", dataset: Any, collator: Any, tokenizer: Any,
                 variant: Variant, log_path: str | Path | None = None, teacher: Any = None,
                 teacher_temperature: float = 1.0, callbacks: tuple = ()) -> Any:
    """A ``DistillationTrainer`` for one variant (the tokenizer is saved with every checkpoint and the model)."""
    from transformers import PrinterCallback, ProgressCallback

    trainer_class, callback_class, progress_class = _trainer_classes()
    all_callbacks = list(callbacks) + ([callback_class(log_path, variant.name)] if log_path is not None else [])
    trainer = trainer_class(model=model, args=args, train_dataset=dataset, data_collator=collator,
                            processing_class=tokenizer, callbacks=all_callbacks, variant=variant, teacher=teacher,
                            teacher_temperature=teacher_temperature)
    # One log line per step (logging_steps = 1, for the loss curve) would flood the terminal: the bar shows the
    # loss instead, and without a bar nothing is printed (the curve is in training_log.json).
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if not args.disable_tqdm:  # TrainerSettings.progress
        trainer.add_callback(progress_class())
    return trainer
