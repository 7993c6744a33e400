#!/usr/bin/env bash
# The device calls of PLAN.md beside this file, from the project root, each right after the one
# before on one machine (it stays up about 30 s after a call):
#     bash docs/prepared/2026-12-06-h100-mla-pairs-1.18.0/gpu_session.sh 1   # carry .gpu-kernels-a
#     ... 2   # carry .gpu-kernels-b, at once
#     ... 3   # carry nothing more
#     ... 4   # carry nothing more
# LIMIT=N before the command shortens a call where less device time is left.
set -u
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
. tools/device_session.sh

case "${1:-}" in
1)  stage_kernels
    card_at_rest ;;
2)  install_kernels || exit 1  # separate rounds only (addendum)
    pairs pairs_2 25 5 d12 d12_flash_mla
    pack 2 ;;
3)  kernels_path
    (timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py -k "interleaved or profile_reports" > "$RESULTS/gpu_tests_3.txt" 2>&1
     echo "exit status $?" >> "$RESULTS/gpu_tests_3.txt")
    tail -3 "$RESULTS/gpu_tests_3.txt"; echo "tests ended at $(elapsed) s"
    pairs pairs_3 25 5 d12 d12_flash_mla
    pack 3 ;;
4)  kernels_path
    pairs pairs_4 25 5 d12 d12_flash_mla
    pack 4 ;;
esac
