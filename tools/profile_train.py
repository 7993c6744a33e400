"""
Where a training step's GPU time goes: the trainer's own train_step under torch.profiler, its
kernels grouped by kind (matmul, attention, fused elementwise and reductions, optimizer, copies),
the GPU's idle share of the step and where in the step it idles (the kernels on either side of its
longest gaps), the kernels that take the most time, and how long the first step took
(torch.compile and the CuTe kernels' JIT). It also times the host: without the profiler, how long
it takes to launch a step and how long it then waits for the GPU (a host that never waits is what
sets the pace); under it, its time in kernel launch calls, where a full launch queue makes it wait.

Flags after -- are the trainer's (model, batch shape, compile, backend, ...). Data: the bundled
shards, or --input_bin. By default: 15 warm-up steps, 20 timed steps, then 3 under the profiler.

    python tools/profile_train.py -- --model d12 --batch_size 32 --sequence_length 1024 --compile 1
    python tools/profile_train.py --trace d12.json.gz -- --model d12_flash_mla --compile 1
"""

import argparse
import collections
import re
import statistics
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from trainer_steps import TrainerSteps, m, split_at_dashes

# first match wins; inductor's own matmul templates are named triton_tem_*
KERNEL_KINDS = [
    ("attention", re.compile(r"cudnn|fmha|flash|attention|flex", re.I)),
    ("RoPE (quack)", re.compile(r"rotary", re.I)),  # a CuTe kernel: its name also says cutlass
    ("matmul", re.compile(r"gemm|nvjet|cutlass|xmma|wgmma|triton_tem|splitK|cublas", re.I)),
    ("optimizer and clipping", re.compile(r"multi_tensor|adam|foreach", re.I)),
    ("fused elementwise and reductions (Triton)", re.compile(r"^triton_")),
    ("copies and fills", re.compile(r"memcpy|memset|copy|fill|cat", re.I)),
]


# a gap at most this long is the GPU's own, between kernels queued back to back; a longer one is
# the GPU waiting for the host to queue the next kernel (or for the host's clock: a sync)
SHORT_GAP_US = 20
# a host that waits less than this for the GPU, per step, is not ahead of it
HOST_WAIT_MS = 0.1
# the CUDA runtime's and driver's kernel launches, as the profiler names them on the host
LAUNCH_CALL = re.compile(r"^cu(da)?LaunchKernel")
# a launch that takes longer than this found the GPU's launch queue full, and waited for room
QUEUE_FULL_US = 50


def kind_of(name):
    return next((kind for kind, pattern in KERNEL_KINDS if pattern.search(name)), "other")


def table_name(name, width):
    """A kernel's name as its table row gives it: the first width characters (all where width is 0),
    with any | in it, which would end the row's cell, written as /."""
    return (name[:width] if width else name).replace("|", "/")


def idle_gaps(spans):
    """The gaps in the GPU's timeline. spans: (start, end, name) of each kernel, in any order, and
    overlapping where streams run side by side. Returns (length, the kernel before, the kernel
    after) of each gap between the busy stretches, in the units of start and end."""
    gaps, busy_until, last = [], None, None
    for start, end, name in sorted(spans):
        if busy_until is not None and start > busy_until:
            gaps.append((start - busy_until, last, name))
        if busy_until is None or end >= busy_until:
            busy_until, last = end, name
    return gaps


def print_idle(gaps, steps, top):
    """The idle time per step in short and long gaps, and the kernel pairs around the long ones."""
    short = [g for g in gaps if g[0] <= SHORT_GAP_US]
    long = [g for g in gaps if g[0] > SHORT_GAP_US]
    print(f"\nGPU idle under the profiler, per step: {sum(g[0] for g in short) / 1e3 / steps:.2f} ms in {len(short) / steps:.0f} gaps of up to {SHORT_GAP_US} us, "
          f"{sum(g[0] for g in long) / 1e3 / steps:.2f} ms in {len(long) / steps:.0f} longer ones (the profiler slows the host, so these grow under it)\n")
    per_pair = collections.defaultdict(lambda: [0.0, 0])
    for length, before, after in long:
        per_pair[before, after][0] += length / 1e3 / steps
        per_pair[before, after][1] += 1
    print("| longest gaps: the kernel before | the kernel after | gaps/step | ms/step |\n| --- | --- | --- | --- |")
    for (before, after), (ms, n) in sorted(per_pair.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"| {before[:70]} | {after[:70]} | {n / steps:.1f} | {ms:.3f} |")


def host_lead(steps):
    """How far the host ran ahead of the GPU: steps holds each step's (launch, wait) in ms, the
    host's time to queue the step and its wait, after that, for the GPU to end the step before."""
    if not steps:
        return "host: too few timed steps to say how far it ran ahead of the GPU"
    launch, wait = zip(*steps)
    text = (f"host, per step (median, range): {statistics.median(launch):.1f} ms ({min(launch):.1f}-{max(launch):.1f}) to launch it, "
            f"then {statistics.median(wait):.2f} ms ({min(wait):.2f}-{max(wait):.2f}) waiting for the GPU")
    if statistics.median(wait) < HOST_WAIT_MS:
        text += ": it does not wait, so the host's launches (or a full launch queue, which blocks them) set the step's pace"
    return text


def launch_calls(calls, steps):
    """The host's time in kernel launch calls under the profiler: calls holds (name, duration in
    us) of the host's events. A full launch queue shows as long calls, the host waiting for room."""
    durations = [us for name, us in calls if LAUNCH_CALL.search(name)]
    if not durations:
        return "host: the profiler recorded no kernel launch calls"
    blocked = [us for us in durations if us > QUEUE_FULL_US]
    return (f"host, per step under the profiler: {sum(durations) / 1e3 / steps:.2f} ms in {len(durations) / steps:.0f} kernel launch calls, "
            f"{sum(blocked) / 1e3 / steps:.2f} ms of it in {len(blocked) / steps:.1f} calls longer than {QUEUE_FULL_US} us (a full launch queue: the host waits for room)")


def main():
    argv, trainer_argv = split_at_dashes(sys.argv[1:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--warmup", type=int, default=15, help="steps before timing (compilation, allocator)")
    p.add_argument("--timed", type=int, default=20, help="steps timed without the profiler")
    p.add_argument("--steps", type=int, default=3, help="steps under the profiler")
    p.add_argument("--top", type=int, default=25, help="kernels listed")
    p.add_argument("--trace", help="also write a Chrome trace (.json or .json.gz) of the profiled steps")
    p.add_argument("--name_width", type=int, default=90, help="characters of each kernel's name listed (0: all; CuTe kernels' names end in their tiles)")
    args = p.parse_args(argv)
    if args.warmup < 0 or args.timed < 1 or args.steps < 1 or args.name_width < 0:
        m.usage_error("--warmup and --name_width must not be negative; --timed and --steps must be at least 1")
    steps = TrainerSteps(trainer_argv)
    if not torch.cuda.is_available():
        sys.exit("error: this profiles GPU kernels; it needs a CUDA GPU")
    steps.build()
    targs, ctx, model = steps.args, steps.ctx, steps.model
    print(m.describe_kernels(steps.raw_model))

    if args.warmup:  # the first step holds torch.compile and the CuTe kernels' JIT
        print(f"first step: {steps.run(1)[0] / 1e3:.1f} s")
        if args.warmup > 1:
            steps.run(args.warmup - 1)
    # memory: what the forward pass keeps for backward, and the step's peak
    at_rest = torch.cuda.memory_allocated()
    x, y = (t.to(ctx.device) for t in steps.loader.next_batch())
    with ctx.autocast:
        _, loss = model(x, y, return_logits=False)
    held = torch.cuda.memory_allocated() - at_rest
    loss.backward()
    steps.optimizer.zero_grad(set_to_none=True)
    torch.cuda.reset_peak_memory_stats()
    host = []
    step_ms = statistics.mean(steps.run(args.timed, host))
    batch = f"{targs.batch_size}x{targs.sequence_length}x{steps.grad_accum}"
    print(f"{targs.model}, {torch.cuda.get_device_name()}, batch {batch}: {step_ms:.1f} ms/step (mean of {args.timed}), {steps.tokens_per_step / step_ms * 1e3:,.0f} tok/s")
    print(host_lead(host))
    print(f"memory: {at_rest / 2**30:.2f} GiB between steps (weights, optimizer state), {held / 2**30:.2f} GiB kept by the forward pass for backward, peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        span_ms = statistics.mean(steps.run(args.steps))
    # GPU-side events, less the user annotations (such as the optimizer's), which span kernels
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA and not getattr(e, "is_user_annotation", False)]
    per_name = collections.defaultdict(lambda: [0.0, 0])
    for e in kernels:
        per_name[e.name][0] += e.device_time / 1e3 / args.steps  # ms per step
        per_name[e.name][1] += 1
    per_kind = collections.defaultdict(float)
    for name, (ms, _) in per_name.items():
        per_kind[kind_of(name)] += ms
    busy = sum(per_kind.values())
    print(f"\nprofiled {args.steps} steps: {span_ms:.1f} ms/step (profiler on), GPU busy {busy:.1f} ms, idle {span_ms - busy:.1f} ms ({100 * (1 - busy / span_ms):.1f}%); "
          f"without the profiler the step took {step_ms:.1f} ms, so the GPU idles about {step_ms - busy:.1f} ms of it\n")
    print("| kernel kind | ms/step | share of busy |\n| --- | --- | --- |")
    for kind, ms in sorted(per_kind.items(), key=lambda kv: -kv[1]):
        print(f"| {kind} | {ms:.2f} | {100 * ms / busy:.1f}% |")
    print("\n| top kernels | kind | launches/step | ms/step |\n| --- | --- | --- | --- |")
    for name, (ms, n) in sorted(per_name.items(), key=lambda kv: -kv[1][0])[: args.top]:
        print(f"| {table_name(name, args.name_width)} | {kind_of(name)} | {n / args.steps:g} | {ms:.3f} |")
    print("\n" + launch_calls([(e.name, e.time_range.elapsed_us()) for e in prof.events() if e.device_type == torch.autograd.DeviceType.CPU], args.steps))
    print_idle(idle_gaps([(e.time_range.start, e.time_range.end, e.name) for e in kernels]), args.steps, args.top)
    if args.trace:
        prof.export_chrome_trace(args.trace)
        print(f"\ntrace written to {args.trace}")


if __name__ == "__main__":
    main()
