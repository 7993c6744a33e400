#!/usr/bin/env bash
# The device calls of PLAN.md beside this file, from the project root, each right after the one
# before on one machine (it stays up about 30 s after a call):
#     bash docs/prepared/2026-12-07-h100-mla-xgrad-quack/gpu_session.sh 1   # carry .gpu-kernels-a
#     ... 2   # carry .gpu-kernels-b and .base, at once
#     ... 3   # carry nothing more; again as call 4 if time is left
# .base holds the trainer without the change: `git archive 95ca5ae train_gpt2_mod.py | tar -x -C .base`
# and today's tools copied in (cp -r tools .base/).
# LIMIT=N before the command shortens a call where less device time is left.
set -u
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
TOP=400  # every kernel, so that touched_kernels sees them all
. tools/device_session.sh
TESTS="test_mlas_rope_in_quacks_projections_matches_pytorchs_projections or test_mla_on_flash_attn4_matches_the_split_path or test_fast_kernels_and_pytorch_give_the_same_model and d12_flash_mla"

keep_rule() {  # the plan's rule from touched.txt and the tests' output: "." if kept, else ".base"
    python3 - "$RESULTS/touched.txt" "$RESULTS/gpu_tests_2.txt" <<'PY'
import re, sys
touched, tests = open(sys.argv[1]).read(), open(sys.argv[2]).read()
new, base = (float(x) for x in re.findall(r"rows in this profile only, ([\d.]+) ms a step", touched))
ran = re.search(r"(\d+) passed", tests)
ok = "exit status 0" in tests and ran is not None and int(ran.group(1)) >= 2
print("." if base - new >= 0.05 and ok else ".base")
PY
}

case "${1:-}" in
1)  stage_kernels
    card_at_rest ;;
2)  install_kernels || exit 1
    profile .base mla_base d12_flash_mla
    profile . mla_new d12_flash_mla
    touched_kernels "$RESULTS/profile_mla_new.txt" "$RESULTS/profile_mla_base.txt" > "$RESULTS/touched.txt"; cat "$RESULTS/touched.txt"
    (timeout $(( $(left) - 15 )) python3 -m pytest -q -p no:cacheprovider tests/test_hopper_kernels.py -k "$TESTS" \
        > "$RESULTS/gpu_tests_2.txt" 2>&1; echo "exit status $?" >> "$RESULTS/gpu_tests_2.txt")
    tail -3 "$RESULTS/gpu_tests_2.txt"; echo "tests ended at $(elapsed) s"
    keep_rule | tee /tmp/kept "$RESULTS/kept.txt"
    pack 2 ;;
3)  kernels_path
    tree=$(cat /tmp/kept) || exit 1
    echo "rounds from $tree"; with_data "$tree"
    (cd "$tree" && pairs pairs_3_$(date +%H%M) 25 5 d12 d12_flash_mla)
    pack 3 ;;
esac
