"""Several processes writing one knowledge store: who takes which sequences, and the files they leave for each other.

Under ``accelerate launch`` / ``torchrun`` each of the W processes (ranks) extracts one block of consecutive
sequences, cut at window boundaries (extract.py) so every teacher batch is the batch a one-process run would
form, and writes its own series of shards (``shard-rank003-00000.bin`` ...). Two small files in the store folder
tie the ranks together until the manifest replaces them:

    ranks.json          the plan, written by rank 0 before anyone extracts: {"world_size": W, "n_sequences": n,
                        "ranges": [[first, stop], ...]} (rank r takes sequences first..stop-1)
    rank-00003.json     rank 3's finished part (its shards, statistics and run figures), written when it is done

Rank 0 writes ``manifest.json`` from the parts once every rank has written its own (``finish_store``), then
removes both kinds of file; every rank returns once the manifest exists. Ranks, their number and the barriers
come from accelerate's ``PartialState`` (``process_state``).

A killed run is resumed by launching the same command with the same number of processes: the plan is read
back, so each rank continues its own block from its last complete shard (writer.py). Another number of
processes is refused while shards exist, because every block, and so every shard series, depends on W.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from first_distill.store.manifest import MANIFEST_NAME, Manifest, write_json_atomically
from first_distill.store.shard import SHARD_PATTERN
from first_distill.store.writer import KnowledgeStoreWriter, WriterPart
from first_eval.errors import InputError

PLAN_FILE = "ranks.json"
# How long a rank waits at a barrier (accelerate's default is 10 min under NCCL): rank 0's `auto` fit of T and
# the slowest rank's last window are waited for. A rank that dies ends the others through the launcher.
PROCESS_GROUP_TIMEOUT = timedelta(hours=6)


def part_file(rank: int) -> str:
    return f"rank-{rank:05d}.json"


@dataclass(frozen=True)
class RankPlan:
    """Rank r extracts sequences ``ranges[r][0]`` .. ``ranges[r][1] - 1``; the ranges tile 0..n_sequences-1 in order
    (a range may be empty: more ranks than windows)."""

    world_size: int
    n_sequences: int
    ranges: tuple[tuple[int, int], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"world_size": self.world_size, "n_sequences": self.n_sequences,
                "ranges": [list(bounds) for bounds in self.ranges]}

    @classmethod
    def from_dict(cls, data: dict) -> "RankPlan":
        ranges = tuple((int(first), int(stop)) for first, stop in data["ranges"])
        plan = cls(int(data["world_size"]), int(data["n_sequences"]), ranges)
        stops = [0, *(stop for _, stop in ranges)]
        tiled = all(first == stops[r] and stop >= first for r, (first, stop) in enumerate(ranges))
        if len(ranges) != plan.world_size or not tiled or stops[-1] != plan.n_sequences:
            raise ValueError(f"ranges {data['ranges']} do not tile sequences 0..{plan.n_sequences - 1} in "
                             f"{plan.world_size} blocks")
        return plan


def split_ranges(window_bounds: Sequence[tuple[int, int]], window_costs: Sequence[float],
                 world_size: int) -> tuple[tuple[int, int], ...]:
    """Cut consecutive windows (``(first, stop)`` each, tiling 0..n-1) into ``world_size`` blocks of about equal cost.

    Cut r falls at the window boundary whose cumulative cost is nearest to r / W of the total (the later one on
    a tie: a lone window goes to rank 0), so no block costs more than an even share plus one window.
    Deterministic: the same windows and costs give the same blocks on every rank.
    """
    n = window_bounds[-1][1] if len(window_bounds) else 0
    cumulative = np.concatenate([[0.0], np.cumsum(np.asarray(window_costs, dtype=np.float64))])  # (m + 1,)
    starts = [bound[0] for bound in window_bounds] + [n]  # sequence index at each window boundary
    cuts = [0]
    for r in range(1, world_size):
        distance = np.abs(cumulative - cumulative[-1] * r / world_size)[::-1]
        nearest = len(distance) - 1 - int(np.argmin(distance))
        cuts.append(max(nearest, cuts[-1]))
    cuts.append(len(window_bounds))
    return tuple((starts[cuts[r]], starts[cuts[r + 1]]) for r in range(world_size))


def holds_shards(folder: Path) -> bool:
    return folder.is_dir() and any(SHARD_PATTERN.match(path.name) for path in folder.glob("shard-*.bin"))


def read_plan(folder: Path) -> RankPlan | None:
    """The plan a run in ``folder`` recorded; a folder with shards but no plan was written by one process
    (before plans were recorded); None for a fresh folder."""
    path = folder / PLAN_FILE
    if path.is_file():
        try:
            return RankPlan.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as bad:
            raise InputError(f"{path} is unreadable ({type(bad).__name__}: {bad}); extract into a new folder") from None
    return None


def settle_plan(folder: Path, world_size: int, n_sequences: int,
                fresh_ranges: Callable[[], tuple[tuple[int, int], ...]]) -> RankPlan:
    """The plan this run follows: the recorded one when the folder holds shards of an unfinished run (which must
    have had as many processes and sequences: else one ``InputError`` line), a fresh one otherwise.

    Reads only. Every rank calls it before the first barrier, when rank 0 may already have written the plan it
    chose (the same plan, or a fresh one over a folder without shards), so they all reach the same answer."""
    recorded = read_plan(folder)
    if holds_shards(folder):
        started_by = recorded.world_size if recorded is not None else 1
        if started_by != world_size:
            how = ("one process (no accelerate launch)" if started_by == 1 else
                   f"{started_by} processes (accelerate launch --num_processes {started_by})")
            raise InputError(f"--output {folder}: this unfinished extraction was started by {started_by} process"
                             f"{'es' if started_by > 1 else ''} and is resumed by {world_size}; resume it with {how}, "
                             "or extract into a new folder")
        if recorded is not None:
            if recorded.n_sequences != n_sequences:
                raise InputError(f"--output {folder}: this unfinished extraction was started on {recorded.n_sequences} "
                                 f"training sequences and this run has {n_sequences}; resume it with the same "
                                 "training data (and --limit), or extract into a new folder")
            return recorded
    return RankPlan(world_size, n_sequences, tuple(fresh_ranges()))


def write_plan(folder: Path, plan: RankPlan) -> None:
    """Rank 0, before any rank extracts: record the plan and drop the parts a killed run left."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("rank-*.json"):
        stale.unlink(missing_ok=True)
    write_json_atomically(folder / PLAN_FILE, plan.to_dict())


def write_part(folder: Path, rank: int, part: WriterPart, run: dict[str, Any]) -> None:
    """Rank ``rank`` is done: its finished writer part and its run figures (JSON-able)."""
    write_json_atomically(folder / part_file(rank), {"part": part.to_dict(), "run": run})


def read_parts(folder: Path, world_size: int) -> list[tuple[WriterPart, dict[str, Any]]]:
    """Every rank's part, in rank order (rank 0, after every rank has written its own)."""
    parts = []
    for rank in range(world_size):
        document = json.loads((folder / part_file(rank)).read_text(encoding="utf-8"))
        parts.append((WriterPart.from_dict(document["part"]), document["run"]))
    return parts


def remove_rank_files(folder: Path, world_size: int) -> None:
    """After the manifest: the plan and the parts are in it."""
    for name in (PLAN_FILE, *(part_file(rank) for rank in range(world_size))):
        (folder / name).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------- the processes


def process_state() -> Any:
    """accelerate's ``PartialState`` (rank, number of processes, barriers); one process when not launched.

    On a machine without an accelerator (or with ``ACCELERATE_USE_CPU``) the processes of a launch form a CPU
    (gloo) group: a plain ``PartialState()`` would leave each of them alone. The timeout counts only where this
    call is the first to make the state.
    """
    import torch
    from accelerate import PartialState

    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not (
        torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available())
    return PartialState(cpu=cpu, timeout=PROCESS_GROUP_TIMEOUT)


def process_device(device: str | None, state: Any) -> str:
    """``device``, or a GPU when there is one; an unnumbered ``cuda`` under several processes is each one's own GPU."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and state.num_processes > 1:
        return str(state.device)  # cuda:<local rank>
    return device


def warn_if_idle(plan: RankPlan, window_size: int) -> None:
    """More processes than windows (``window_size`` sequences each): some ranks have nothing to do."""
    idle = sum(first == stop for first, stop in plan.ranges)
    if idle:
        warnings.warn(f"{idle} of {plan.world_size} processes have no sequences to extract: the {plan.n_sequences} "
                      f"training sequences make fewer windows of {window_size} than there are processes "
                      "(a rank takes whole windows); use fewer processes or a smaller batch size", stacklevel=3)


def finish_store(state: Any, writer: KnowledgeStoreWriter, plan: RankPlan, run: dict[str, Any],
                 settings: dict[str, Any]) -> Manifest:
    """Close this rank's writer; rank 0 writes the manifest once every rank's part is on disk; every rank returns it.

    ``run``: this rank's figures (rank, first_sequence, stop, resumed_from, positions_this_run, seconds, device,
    sampled_mass_sum). The manifest's ``stats["extraction"]`` sums them over the ranks (seconds: the slowest;
    resumed_from: the sequences already on disk at the start), adds ``settings`` and lists each rank's figures.
    """
    output, part = writer.folder, writer.finish()
    run = {**run, "timed_shard_positions": part.timed_shard_positions}
    if plan.world_size > 1:
        write_part(output, state.process_index, part, run)
        state.wait_for_everyone()
    if state.is_main_process:
        parts = read_parts(output, plan.world_size) if plan.world_size > 1 else [(part, run)]
        runs = [run for _, run in parts]
        positions, seconds = sum(run["positions_this_run"] for run in runs), max(run["seconds"] for run in runs)
        extraction = {"positions_this_run": positions, "seconds": seconds,
                      "resumed_from": sum(run["resumed_from"] - run["first_sequence"] for run in runs),
                      "positions_per_second": positions / seconds if seconds > 0 else None,
                      "device": ", ".join(dict.fromkeys(run["device"] for run in runs)), **settings,
                      "timed_shard_positions": runs[0]["timed_shard_positions"], "world_size": plan.world_size,
                      "ranks": [{key: value for key, value in run.items() if key != "sampled_mass_sum"}
                                for run in runs]}
        if writer.identity.selection == "sample" and positions:
            extraction["sampled_teacher_mass_mean"] = sum(run["sampled_mass_sum"] or 0.0 for run in runs) / positions
        try:
            manifest = writer.write_manifest([part for part, _ in parts], {"extraction": extraction})
        except ValueError as error:
            raise InputError(f"--output {output}: {error}") from None
        remove_rank_files(output, plan.world_size)
    state.wait_for_everyone()  # the manifest exists: every rank may read the store
    if not state.is_main_process:
        manifest = Manifest.from_dict(json.loads((output / MANIFEST_NAME).read_text(encoding="utf-8")))
    return manifest
