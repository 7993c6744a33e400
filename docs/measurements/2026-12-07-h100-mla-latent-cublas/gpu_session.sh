#!/usr/bin/env bash
# The device calls of PLAN.md beside this file, from the project root, each right after the one
# before on one machine (it stays up about 30 s after a call):
#     bash docs/prepared/2026-12-07-h100-mla-latent-cublas/gpu_session.sh 1   # carry .gpu-kernels-a
#     ... 2   # carry .gpu-kernels-b and .base, at once
#     ... 3   # carry nothing more
# or, after addendum 4, call 1 and then `... 2p` (carry .gpu-kernels-b and .base): candidate.diff applied, the profiles alone.
# .base holds the trainer without the change: `git archive 95ca5ae train_gpt2_mod.py tools | tar -x -C .base`.
# LIMIT=N before the command shortens a call where less device time is left.
# It ran with its own copy of touched_kernels; that copy has since moved, unchanged, into
# tools/device_session.sh (tests/test_device_session.py checks it still gives touched.txt here).
set -u
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
TOP=400  # every kernel, so that touched_kernels (tools/device_session.sh) sees them all
. tools/device_session.sh

case "${1:-}" in
1)  stage_kernels
    card_at_rest ;;
2)  install_kernels || exit 1
    (timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_hopper_kernels.py \
        -k "test_mlas_rope_in_quacks_projections_matches_pytorchs_projections or test_fast_kernels_and_pytorch_give_the_same_model and d12_flash_mla" \
        > "$RESULTS/gpu_tests_2.txt" 2>&1; echo "exit status $?" >> "$RESULTS/gpu_tests_2.txt")
    tail -3 "$RESULTS/gpu_tests_2.txt"; echo "tests ended at $(elapsed) s"
    profile . mla_new d12_flash_mla
    profile .base mla_base d12_flash_mla
    touched_kernels "$RESULTS/profile_mla_new.txt" "$RESULTS/profile_mla_base.txt" > "$RESULTS/touched.txt"; cat "$RESULTS/touched.txt"
    pack 2 ;;
2p) install_kernels || exit 1  # addendum 4: the profiles alone, the change applied from its diff
    git apply docs/prepared/2026-12-07-h100-mla-latent-cublas/candidate.diff || exit 1
    profile . mla_new d12_flash_mla
    profile .base mla_base d12_flash_mla
    touched_kernels "$RESULTS/profile_mla_new.txt" "$RESULTS/profile_mla_base.txt" > "$RESULTS/touched.txt"; cat "$RESULTS/touched.txt"
    pack 2 ;;
2b) install_kernels || exit 1  # addendum 9: call 2 again, the base profile first (its data linked in)
    ln -sfn "$PWD/data" .base/data
    profile .base mla_base d12_flash_mla
    profile . mla_new d12_flash_mla
    touched_kernels "$RESULTS/profile_mla_new.txt" "$RESULTS/profile_mla_base.txt" > "$RESULTS/touched.txt"; cat "$RESULTS/touched.txt"
    (timeout $(( $(left) - 15 )) python3 -m pytest -q -p no:cacheprovider tests/test_hopper_kernels.py \
        -k "test_mlas_rope_in_quacks_projections_matches_pytorchs_projections or test_fast_kernels_and_pytorch_give_the_same_model and d12_flash_mla" \
        > "$RESULTS/gpu_tests_2b.txt" 2>&1; echo "exit status $?" >> "$RESULTS/gpu_tests_2b.txt")
    tail -3 "$RESULTS/gpu_tests_2b.txt"; echo "tests ended at $(elapsed) s"
    pack 2b ;;
3)  kernels_path
    pairs pairs_3 25 5 d12 d12_flash_mla
    pack 3 ;;
esac
