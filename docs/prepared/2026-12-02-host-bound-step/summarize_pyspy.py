"""What a py-spy raw (collapsed-stack) profile of the trainer says about its host: the share of
samples per thread, in each bucket below (a sample counts in the first bucket one of its frames
matches), and the frames that hold the most samples themselves (leaves) and in all (inclusive).

    python summarize_pyspy.py d12_auto.raw [--top 25]
"""

import argparse
import collections
import re

# first match wins, searched from the leaf up
BUCKETS = [
    ("waiting for the GPU (event or stream sync)", re.compile(r"cuEventSynchronize|cudaEventSynchronize|cuStreamSynchronize|cudaStreamSynchronize|cuCtxSynchronize")),
    ("kernel launch calls (CUDA driver)", re.compile(r"cuLaunchKernel|cudaLaunchKernel|cuLaunchKernelEx")),
    ("elsewhere in the CUDA driver (its symbols stripped)", re.compile(r"\(libcuda\.so")),
    ("Python's garbage collector", re.compile(r"gc_collect_main|gc_collect_with_callback|_PyGC_Collect")),
    ("custom-op dispatch (torch.library)", re.compile(r"backend_impl|autograd_impl|adinplaceorview_impl|redispatch \(torch/_ops")),
    ("Triton launches (inductor)", re.compile(r"triton_heuristics|static_triton_launcher")),
]


def read(path):
    """(thread, frames leaf last, samples) of each stack."""
    for line in open(path):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        frames = stack.split(";")
        thread = frames[0] if frames[0].startswith("thread") else "all threads"
        yield thread, frames, int(count)


def bucket(frames):
    for name, pattern in BUCKETS:
        if any(pattern.search(f) for f in reversed(frames)):
            return name
    return "other"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("raw")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    stacks = list(read(args.raw))
    total = sum(n for *_, n in stacks)
    per_thread = collections.Counter()
    per_bucket = collections.defaultdict(collections.Counter)
    leaves, inclusive = collections.Counter(), collections.Counter()
    for thread, frames, n in stacks:
        per_thread[thread] += n
        per_bucket[thread][bucket(frames)] += n
        leaves[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    print(f"{total} samples")
    for thread, n in per_thread.most_common():
        print(f"\n{thread}: {n} samples ({100 * n / total:.1f}%)")
        for name, k in per_bucket[thread].most_common():
            print(f"  {100 * k / n:5.1f}%  {name}")
    for title, counter in (("leaf frames", leaves), ("inclusive", inclusive)):
        print(f"\n| {title} | share |\n| --- | --- |")
        for frame, n in counter.most_common(args.top):
            print(f"| {frame[:110]} | {100 * n / total:.1f}% |")


if __name__ == "__main__":
    main()
