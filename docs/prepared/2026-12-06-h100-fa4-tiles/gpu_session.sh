#!/usr/bin/env bash
# The device calls of PLAN.md beside this file, from the project root, one right after the other:
#     bash docs/prepared/2026-12-06-h100-fa4-tiles/gpu_session.sh 1   # carry .gpu-kernels-a
#     ... 2   # carry .gpu-kernels-b, at once
set -u
FLAGS=""
. tools/device_session.sh
case "${1:-}" in
1)  stage_kernels
    card_at_rest ;;
2)  install_kernels || exit 1
    (cd tools && timeout $(( $(left) - 10 )) python3 bench_fa4_tiles.py --json "$RESULTS/tiles.json" | tee "$RESULTS/tiles.txt")
    echo "tiles ended at $(elapsed) s"
    pack 2 ;;
esac
