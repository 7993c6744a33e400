"""What a py-spy raw (collapsed-stack) profile of the trainer says about its host: the share of
samples per thread in each bucket below (native frames first: a sync, a launch, the driver, the
GC; else whose Python code was nearest the leaf), the main thread's samples by the trainer's own
line nearest the leaf (which part of the step), and the frames that hold the most samples
themselves (leaves) and in all (inclusive). Reads plain or gzipped files.

    python summarize_pyspy.py d12_auto.raw [--top 25]
"""

import argparse
import collections
import gzip
import re

# Native frames anywhere in the stack: the first match wins
NATIVE = [
    ("waiting for the GPU (event or stream sync)", re.compile(r"cuEventSynchronize|cudaEventSynchronize|cuStreamSynchronize|cudaStreamSynchronize|cuCtxSynchronize")),
    ("kernel launch calls (CUDA driver)", re.compile(r"cuLaunchKernel|cudaLaunchKernel|cuLaunchKernelEx")),
    ("elsewhere in the CUDA driver (its symbols stripped)", re.compile(r"\(libcuda\.so")),
    ("Python's garbage collector", re.compile(r"gc_collect_main|gc_collect_with_callback|_PyGC_Collect")),
]
# then the Python frame nearest the leaf: whose Python code the host was running
PYTHON = [
    ("custom-op dispatch (torch.library's and the dispatcher's Python)", re.compile(r"\(torch/_library/|\(torch/_ops\.py|\(torch/_compile\.py")),
    ("CuTe launchers' Python (quack, FA4, CuTe DSL)", re.compile(r"\((quack|flash_attn|cutlass|nvidia_cutlass_dsl|tvm_ffi)/")),
    ("Triton launches (inductor)", re.compile(r"triton_heuristics|static_triton_launcher")),
    # py-spy names a file by its path relative to sys.path, so inductor's generated modules show as their hash
    ("inductor's compiled wrapper code", re.compile(r"torchinductor|\(\w{40,}\.py:")),
    ("autograd and the optimizer (torch)", re.compile(r"\(torch/(autograd|optim|nn/utils)/")),
]


def read(path):
    """(thread, frames leaf last, samples) of each stack."""
    for line in (gzip.open(path, "rt") if path.endswith(".gz") else open(path)):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        frames = stack.split(";")
        thread = frames[0] if frames[0].startswith("thread") else "all threads"
        yield thread, frames, int(count)


def bucket(frames):
    for name, pattern in NATIVE:
        if any(pattern.search(f) for f in frames):
            return name
    python = [f for f in frames if ".py:" in f]
    leaf = python[-1] if python else ""
    return next((name for name, pattern in PYTHON if pattern.search(leaf)), "other")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("raw")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    stacks = list(read(args.raw))
    total = sum(n for *_, n in stacks)
    per_thread = collections.Counter()
    per_bucket = collections.defaultdict(collections.Counter)
    leaves, inclusive, trainer = collections.Counter(), collections.Counter(), collections.Counter()
    for thread, frames, n in stacks:
        per_thread[thread] += n
        if "MainThread" in thread:  # the trainer's own line nearest the leaf: which part of the step
            own = [f for f in frames if "(train_gpt2_mod.py:" in f]
            trainer[own[-1] if own else "(none)"] += n
        per_bucket[thread][bucket(frames)] += n
        leaves[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    print(f"{total} samples")
    for thread, n in per_thread.most_common():
        print(f"\n{thread}: {n} samples ({100 * n / total:.1f}%)")
        for name, k in per_bucket[thread].most_common():
            print(f"  {100 * k / n:5.1f}%  {name}")
    main_total = sum(trainer.values())
    for title, counter, base in (("main thread, the trainer's line nearest the leaf", trainer, main_total),
                                 ("leaf frames", leaves, total), ("inclusive", inclusive, total)):
        print(f"\n| {title} | share |\n| --- | --- |")
        for frame, n in counter.most_common(args.top):
            print(f"| {frame[:110]} | {100 * n / base:.1f}% |")


if __name__ == "__main__":
    main()
