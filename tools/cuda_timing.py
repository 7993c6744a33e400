"""Timing helpers shared by the GPU benchmarks in tools/."""

import statistics
import sys

import torch


def median_ms(fn, reps, warmup=5):
    """Median milliseconds of fn() over reps calls, each timed with CUDA events from an idle GPU,
    after warmup calls."""
    return batch_ms(fn, reps, calls=1, warmup=warmup)


def batch_ms(fn, reps, calls, warmup=3):
    """Median milliseconds per call of fn over reps batches of calls back-to-back calls, each batch
    timed from an idle GPU, after warmup calls. With many calls the host's launches overlap the
    GPU's work, as under CUDA graphs in a training step."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / calls)
    return statistics.median(times)


def exit_unless_quack_runs(quack_unavailable):
    """A one-line error and exit unless this machine has a CUDA GPU on which quack's kernels run in
    bf16 (quack_unavailable: the trainer's check)."""
    if not torch.cuda.is_available():
        sys.exit("error: this times CUDA kernels; it needs a CUDA GPU")
    reason = quack_unavailable("cuda", torch.cuda.get_device_capability(), torch.bfloat16)
    if reason:
        sys.exit(f"error: {reason}")
