"""Timing helper shared by the GPU benchmarks in tools/."""

import statistics

import torch


def median_ms(fn, reps, warmup=5):
    """Median milliseconds of fn() over reps calls, each timed with CUDA events, after warmup calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)
