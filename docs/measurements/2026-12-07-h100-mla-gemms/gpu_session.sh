#!/usr/bin/env bash
# The device calls of PLAN.md beside this file, from the project root, each right after the one
# before on one machine (it stays up about 30 s after a call):
#     bash docs/prepared/2026-12-06-h100-mla-gemms/gpu_session.sh 1   # carry .gpu-kernels-a
#     ... 2   # carry .gpu-kernels-b, at once: the bench alone (addendum 3)
# and, where the bench moved GEMMs, in a later session (calls 1 and 2's install again first):
#     ... 3   # carry .base: the profiles
#     ... 4   # carry nothing more: the paired rounds
# .base holds the trainer without QuackLinear (git archive of train_gpt2_mod.py and tools/ at the
# commit that measures); calls 3 and 4 apply candidate.diff, the trainer with it.
# LIMIT=N before the command shortens a call where less device time is left.
set -u
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
. tools/device_session.sh

# The addendum's rule on the bench's figures: the key slots' GEMMs that quack (as the trainer calls
# it) ran at least 8% faster than cuBLAS, if their gains sum to 0.15 ms a step or more; else none.
moved_gemms() {
    python3 - "$RESULTS/gemms.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
def ms(prefix, library):
    return next((x["ms"] for x in r if x["gemm"].startswith(prefix) and x["library"] == library), None)
parts = {"forward": ("forward: key slots", "quack, autotuned"),
         "input gradient": ("backward: key slots' input", "quack, autotuned"),
         "weight gradient": ("backward: key slots' weight", "quack, autotuned with split-K")}
moved, gain = [], 0.0
for part, (prefix, library) in parts.items():
    c, q = ms(prefix, "cuBLAS"), ms(prefix, library)
    if c and q and q <= 0.92 * c:
        moved.append(part)
        gain += 12 * (c - q)
print(repr(tuple(moved)) if gain >= 0.15 else "()")
print(f"gain {gain:.3f} ms a step")
PY
}
apply_moved() {  # the trainer's QUACK_KEY_SLOT_GEMMS as the rule chose (the tree is copied afresh each call)
    sed -i "s/^QUACK_KEY_SLOT_GEMMS = .*/QUACK_KEY_SLOT_GEMMS = $(head -1 "$RESULTS/moved.txt")/" train_gpt2_mod.py
    grep -n "^QUACK_KEY_SLOT_GEMMS" train_gpt2_mod.py | tee -a "$RESULTS/moved.txt"
}

case "${1:-}" in
1)  stage_kernels
    card_at_rest ;;
2)  install_kernels || exit 1
    (timeout $(( $(left) - 15 )) python3 tools/bench_mla_gemms.py --match "key slots" --json "$RESULTS/gemms.json" 2>&1 | tee "$RESULTS/gemms.txt" | grep -v "failed")
    echo "bench ended at $(elapsed) s"
    moved_gemms > "$RESULTS/moved.txt"; cat "$RESULTS/moved.txt"
    pack 2 ;;
3)  kernels_path
    grep -qx "()" "$RESULTS/moved.txt" && { echo "nothing moved: no profiles"; exit 0; }
    git apply docs/prepared/2026-12-06-h100-mla-gemms/candidate.diff && apply_moved
    profile . mla_new d12_flash_mla
    profile .base mla_base d12_flash_mla
    pack 3 ;;
4)  kernels_path
    grep -qx "()" "$RESULTS/moved.txt" && { echo "nothing moved: no rounds"; exit 0; }
    git apply docs/prepared/2026-12-06-h100-mla-gemms/candidate.diff && apply_moved
    pairs pairs_4 25 5 d12 d12_flash_mla
    pack 4 ;;
esac
