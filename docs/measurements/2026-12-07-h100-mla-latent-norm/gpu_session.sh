#!/usr/bin/env bash
# The device calls of PLAN.md beside this file, from the project root, each right after the one
# before on one machine (it stays up about 30 s after a call):
#     bash docs/prepared/2026-12-07-h100-mla-latent-norm/gpu_session.sh 1   # carry .gpu-kernels-a
#     ... 2   # carry .gpu-kernels-b and .base, at once
#     ... 3   # carry nothing more: the trainer kept (with the change), or .base if not kept
# .base holds the trainer without the change: `git archive 95ca5ae train_gpt2_mod.py tools | tar -x -C .base`.
# LIMIT=N before the command shortens a call where less device time is left.
set -u
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
TOP=400  # every kernel, so that the rule below sees them all
. tools/device_session.sh
TESTS="test_mlas_rope_in_quacks_projections_matches_pytorchs_projections or test_mla_on_flash_attn4_matches_the_split_path or test_fast_kernels_and_pytorch_give_the_same_model and d12_flash_mla"

# The plan's rule on the two profiles: the kernels the change touched are the rows (name and
# launches a step) found in one profile only; their ms a step summed in each, and the whole step's.
touched_kernels() {
    python3 - "$RESULTS/profile_mla_new.txt" "$RESULTS/profile_mla_base.txt" <<'PY'
import collections, sys
def rows(path):  # the table of kernels, from its header to the first blank line: {(name, launches): [ms, ...]}
    text = open(path).read()
    table = text[text.index("| top kernels |"):].split("\n\n")[0].splitlines()[2:]
    out = collections.defaultdict(list)
    for name, _, n, ms in (line.strip("| ").split(" | ") for line in table):
        out[(name, n)].append(float(ms))  # names are cut short, so several kernels may share one
    return out
new, base = rows(sys.argv[1]), rows(sys.argv[2])
for label, mine, other in (("with the change", new, base), ("without", base, new)):
    only = {k: v for k, v in mine.items() if len(v) != len(other.get(k, []))}
    print(f"{label}: {sum(map(len, mine.values()))} rows, {sum(map(sum, mine.values())):.3f} ms a step in all; "
          f"{sum(map(len, only.values()))} rows in this profile only, {sum(map(sum, only.values())):.3f} ms a step")
    for (name, n), ms in sorted(only.items(), key=lambda kv: -sum(kv[1])):
        print(f"    {sum(ms):.3f}  {n:>4} x {len(ms)}  {name}")
PY
}

case "${1:-}" in
1)  stage_kernels
    card_at_rest ;;
2)  install_kernels || exit 1
    profile .base mla_base d12_flash_mla
    profile . mla_new d12_flash_mla
    touched_kernels > "$RESULTS/touched.txt"; cat "$RESULTS/touched.txt"
    (timeout $(( $(left) - 15 )) python3 -m pytest -q -p no:cacheprovider tests/test_hopper_kernels.py -k "$TESTS" \
        > "$RESULTS/gpu_tests_2.txt" 2>&1; echo "exit status $?" >> "$RESULTS/gpu_tests_2.txt")
    tail -3 "$RESULTS/gpu_tests_2.txt"; echo "tests ended at $(elapsed) s"
    pack 2 ;;
3)  kernels_path
    pairs pairs_3 25 5 d12 d12_flash_mla
    pack 3 ;;
3b) kernels_path  # the change not kept: 1.18.0's trainer
    with_data .base; (cd .base && pairs pairs_3 25 5 d12 d12_flash_mla)
    pack 3 ;;
3i) install_kernels || exit 1  # addendum 1: 3b on a fresh machine, after call 1 there (carry .gpu-kernels-b and .base)
    with_data .base; (cd .base && pairs pairs_3 25 5 d12 d12_flash_mla)
    pack 3 ;;
esac
