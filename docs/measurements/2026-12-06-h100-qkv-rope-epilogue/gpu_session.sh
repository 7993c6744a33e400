#!/usr/bin/env bash
# The device calls of README.md beside this file, from the project root, each right after the one
# before on one machine (it stays up about 30 s after a call):
#     bash ../shared/gpu-kernels/stage.sh                                          # .gpu-kernels-a, -b
#     bash docs/prepared/2026-12-06-qkv-rope-epilogue/gpu_session.sh 1   # carry .gpu-kernels-a, .anchors
#     ... 2   # carry .gpu-kernels-b, .anchors, at once
#     ... 3, 4   # carry .anchors: the kernels, trees and caches of the calls before are still there
# Four arms of d12: "default" (the trainer as it is), "nomix" (it with Inductor's mix-order
# reductions off, by environment: ../2026-12-07-residual-grad-cast/), "onecast" (/tmp/onecast, it
# with mlp_one_cast.diff) and "rope" (/tmp/rope, onecast with qkv_rope_epilogue.diff too).
set -u
HERE=docs/prepared/2026-12-06-qkv-rope-epilogue
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
. tools/device_session.sh
case "${1:-}" in
1)  # the first half of the kernels; the card at rest
    stage_kernels
    nvidia-smi -q -d PERFORMANCE,POWER,CLOCK,TEMPERATURE > "$OUT/smi_idle.txt" 2>&1
    nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv ;;
2)  # the kernels; the trees; rounds 1 and 2 in turn (the second the other way round)
    install_kernels || exit 1
    rm -rf /tmp/onecast /tmp/rope
    cp -r . /tmp/onecast && patch -s -d /tmp/onecast -p1 < $HERE/mlp_one_cast.diff || exit 1
    cp -r /tmp/onecast /tmp/rope && patch -s -d /tmp/rope -p1 < $HERE/qkv_rope_epilogue.diff || exit 1
    bench . default_1 25 d12
    bench /tmp/rope rope_1 25 d12
    bench /tmp/onecast onecast_1 25 d12
    TORCHINDUCTOR_MIX_ORDER_REDUCTION=0 bench . nomix_1 25 d12
    TORCHINDUCTOR_MIX_ORDER_REDUCTION=0 bench . nomix_2 25 d12
    bench /tmp/onecast onecast_2 25 d12
    bench /tmp/rope rope_2 25 d12
    bench . default_2 25 d12
    pack 2 ;;
3)  # round 3, nanoGPT first; the GPU tests of the rope tree (which holds onecast too)
    kernels_path
    bench . default_3 25 d12 --nanogpt .anchors/nanoGPT
    bench /tmp/rope rope_3 25 d12
    bench /tmp/onecast onecast_3 25 d12
    TORCHINDUCTOR_MIX_ORDER_REDUCTION=0 bench . nomix_3 25 d12
    if [ "$(left)" -ge 150 ]; then
        (cd /tmp/rope && timeout -s INT $(( $(left) - 10 )) python3 -m pytest -q -m gpu -rA -p no:warnings tests/test_hopper_kernels.py \
            -k "rope_in_quacks or quack_mlp or packed_attention or compiles_into or fast_kernels_and_pytorch" > "$RESULTS/tests_gpu.txt" 2>&1
         echo "pytest exit status $?" >> "$RESULTS/tests_gpu.txt")
        grep -E "^(PASSED|FAILED|ERROR)|passed|failed|exit status" "$RESULTS/tests_gpu.txt" | tail -20
    else
        echo "tests: skipped at $(elapsed) s"
    fi
    pack 3 ;;
4)  # both ends under the profiler; the window and MLA on both; nanoGPT again
    kernels_path
    profile /tmp/rope rope
    profile . default
    bench /tmp/rope window_rope 25 d12_sliding_window
    bench /tmp/rope mla_rope 25 d12_flash_mla
    bench . mla_default 25 d12_flash_mla
    bench /tmp/rope rope_4 25 d12 --nanogpt .anchors/nanoGPT
    pack 4 ;;
*)  echo "usage: gpu_session.sh 1|2|3|4" >&2; exit 2 ;;
esac
echo "call ${1} took $(elapsed) s"
