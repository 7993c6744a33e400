#!/usr/bin/env bash
# The device calls of PLAN.md beside this file, from the project root, each right after the one
# before on one machine (it stays up about 30 s after a call):
#     bash docs/prepared/<date>-h100-mla-joined-projection/gpu_session.sh 1   # carry .gpu-kernels-a
#     ... 2   # carry .gpu-kernels-b and .base, at once
#     ... 3   # carry .base; again as call 4 if time is left
# .base holds the trainer without the change (PLAN.md, "Before the calls").
# LIMIT=N before the command shortens a call where less device time is left.
set -u
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
. tools/device_session.sh

case "${1:-}" in
1)  stage_kernels
    card_at_rest ;;
2)  install_kernels || exit 1
    WATCH=flash_attn compare_profiles .base d12_flash_mla "$MLA_GPU_TESTS"
    keep_rule 0.05 2 | tee /tmp/kept "$RESULTS/kept.txt"
    pack 2 ;;
3)  kernels_path
    kept=$(cat /tmp/kept) || exit 1
    echo "kept: $kept"
    if [ "$kept" = . ]; then
        pairs pairs_3_$(date +%H%M) 25 5 d12 d12_flash_mla --trainer .base/train_gpt2_mod.py --trainer train_gpt2_mod.py
    else
        pairs pairs_3_$(date +%H%M) 25 5 d12 d12_flash_mla --trainer .base/train_gpt2_mod.py
    fi
    pack 3 ;;
esac
