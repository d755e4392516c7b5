"""Peak tensor memory of one call, the way the benchmarks measure it (shared by bench_losses and bench_train).

CUDA: ``torch.cuda.max_memory_allocated`` above what was allocated before the call. CPU: the byte-exact peak of
live tensor memory from the torch profiler's allocation events (every allocation and free of torch's CPU
allocator, temporaries inside kernels included; not the process RSS).
"""

from __future__ import annotations

from typing import Any, Callable


def peak_bytes(step: Callable[[], Any], device: str) -> tuple[int, Any]:
    """(peak bytes of ``step()`` above the memory allocated before it, its return value). Warm up first."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        value = step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before, value
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        value = step()
    # Every allocation (+bytes) and free (-bytes) during the step, in time order.
    events = sorted((event.start_ns(), event.nbytes()) for event in prof.profiler.kineto_results.events()
                    if event.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak, value
