"""`first` as ``torchrun`` / ``accelerate launch`` runs it in test_extract_distributed.py, with two test stand-ins set by environment:

    FIRST_TEST_SECONDS_PER_PASS=S   the writers' clock advances S seconds per teacher forward pass (and not
                                    otherwise), so each rank's clock-chosen shard size is the same on every run
    FIRST_TEST_KILL=R:I             rank R SIGKILLs itself when it is about to write its shard I (the launcher
                                    then stops the other ranks, as after a real crash)

Usage: ACCELERATE_USE_CPU=true torchrun --standalone --nproc_per_node 2 tests/first_distill/launched_first.py distill extract ...
"""

from __future__ import annotations

import os
import signal
import sys


def install_stand_ins() -> None:
    from first_distill.teacher import extract as extract_module
    from first_distill.store import writer as writer_module

    rank = int(os.environ.get("RANK", "0"))
    seconds_per_pass = os.environ.get("FIRST_TEST_SECONDS_PER_PASS")
    if seconds_per_pass:
        now = [0.0]
        original_logits = extract_module.completion_logits

        def completion_logits(model, batch):
            now[0] += float(seconds_per_pass)
            return original_logits(model, batch)

        extract_module.completion_logits = completion_logits
        writer_module.monotonic = lambda: now[0]
    kill = os.environ.get("FIRST_TEST_KILL")
    if kill and int(kill.split(":")[0]) == rank:
        at_shard = int(kill.split(":")[1])
        original_write = writer_module.write_shard

        def write_shard(folder, index, **kwargs):
            if index >= at_shard:
                os.kill(os.getpid(), signal.SIGKILL)
            return original_write(folder, index, **kwargs)

        writer_module.write_shard = write_shard


if __name__ == "__main__":
    install_stand_ins()
    from first_eval.cli import main

    sys.argv = ["first", *sys.argv[1:]]
    main()
