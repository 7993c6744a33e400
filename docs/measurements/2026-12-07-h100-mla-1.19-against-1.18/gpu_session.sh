#!/usr/bin/env bash
# The device calls of PLAN.md beside this file, from the project root, each right after the one
# before on one machine (it stays up about 30 s after a call):
#     bash docs/prepared/2026-12-07-h100-mla-1.19-against-1.18/gpu_session.sh 1   # carry .gpu-kernels-a
#     ... 2   # carry .gpu-kernels-b and .base, at once
#     ... 3   # carry nothing more; again as call 4 if time is left
# .base holds 1.18.0's trainer: `git archive 95ca5ae train_gpt2_mod.py | tar -x -C .base`.
# LIMIT=N before the command shortens a call where less device time is left.
set -u
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
. tools/device_session.sh
TRAINERS="--trainer .base/train_gpt2_mod.py --trainer train_gpt2_mod.py"

case "${1:-}" in
1)  stage_kernels
    card_at_rest ;;
2)  install_kernels || exit 1
    TOP=400 NAME_WIDTH=0 profile . d12 d12
    TOP=400 NAME_WIDTH=0 profile . mla d12_flash_mla
    pairs pairs_2_$(date +%H%M) 25 5 d12 d12_flash_mla $TRAINERS
    pack 2 ;;
3)  kernels_path
    pairs pairs_3_$(date +%H%M) 25 5 d12 d12_flash_mla $TRAINERS
    pack 3 ;;
esac
