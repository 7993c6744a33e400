#!/usr/bin/env bash
# The device calls of PLAN.md beside this file, from the project root, each right after the one
# before on one machine (it stays up about 30 s after a call):
#     bash docs/prepared/2026-12-06-h100-mla-gemms/gpu_session.sh 1   # carry .gpu-kernels-a
#     ... 2   # carry .gpu-kernels-b, at once
# LIMIT=N before the command shortens a call where less device time is left.
set -u
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
. tools/device_session.sh

case "${1:-}" in
1)  stage_kernels
    card_at_rest ;;
2)  install_kernels || exit 1
    (timeout $(( $(left) - 20 )) python3 tools/bench_mla_gemms.py --json "$RESULTS/gemms.json" 2>&1 | tee "$RESULTS/gemms.txt" | grep -v "^| .* failed")
    echo "bench ended at $(elapsed) s"
    pack 2 ;;
esac
