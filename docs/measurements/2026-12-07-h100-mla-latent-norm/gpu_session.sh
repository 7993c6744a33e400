#!/usr/bin/env bash
# The device calls of PLAN.md beside this file, from the project root, each right after the one
# before on one machine (it stays up about 30 s after a call):
#     bash docs/prepared/2026-12-07-h100-mla-latent-norm/gpu_session.sh 1   # carry .gpu-kernels-a
#     ... 2   # carry .gpu-kernels-b and .base, at once
#     ... 3   # carry nothing more: the trainer kept (with the change), or .base if not kept
# .base holds the trainer without the change: `git archive 95ca5ae train_gpt2_mod.py tools | tar -x -C .base`.
# LIMIT=N before the command shortens a call where less device time is left.
# It ran with its own copy of touched_kernels; that copy has since moved, unchanged, into
# tools/device_session.sh (tests/test_device_session.py checks it still gives touched.txt here).
set -u
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
TOP=400  # every kernel, so that touched_kernels (tools/device_session.sh) sees them all
. tools/device_session.sh
TESTS="test_mlas_rope_in_quacks_projections_matches_pytorchs_projections or test_mla_on_flash_attn4_matches_the_split_path or test_fast_kernels_and_pytorch_give_the_same_model and d12_flash_mla"

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
