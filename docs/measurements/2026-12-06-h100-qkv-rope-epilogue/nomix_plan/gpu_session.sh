#!/usr/bin/env bash
# The device calls of README.md beside this file, from the project root, each right after the one
# before on one machine (it stays up about 30 s after a call):
#     bash ../shared/gpu-kernels/stage.sh                               # .gpu-kernels-a, -b
#     bash docs/prepared/2026-12-07-residual-grad-cast/gpu_session.sh 1   # carry .gpu-kernels-a
#     ... 2   # carry .gpu-kernels-b, at once
#     ... 3   # no carry: the kernels and caches of the calls before are still there
# One tree (the trainer as it is); the arms differ only in Inductor's settings, by environment:
# "default", and "nomix" with Inductor's mix-order reductions off.
set -u
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
. tools/device_session.sh
case "${1:-}" in
1)  stage_kernels
    nvidia-smi -q -d PERFORMANCE,POWER,CLOCK,TEMPERATURE > "$OUT/smi_idle.txt" 2>&1
    nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv ;;
2)  # rounds 1 and 2 in turn, the second the other way round
    install_kernels || exit 1
    bench . default_1 25 d12
    TORCHINDUCTOR_MIX_ORDER_REDUCTION=0 bench . nomix_1 25 d12
    TORCHINDUCTOR_MIX_ORDER_REDUCTION=0 bench . nomix_2 25 d12
    bench . default_2 25 d12
    pack 2 ;;
3)  # round 3; both arms under the profiler; then Inductor's fusion log of the default step (why the
    # cast stays out of the LayerNorm backward kernel) and its code of the nomix step (whether the
    # cast joins it there)
    kernels_path
    bench . default_3 25 d12
    TORCHINDUCTOR_MIX_ORDER_REDUCTION=0 bench . nomix_3 25 d12
    TORCHINDUCTOR_MIX_ORDER_REDUCTION=0 profile . nomix
    profile . default
    inductor_log . default fusion
    TORCHINDUCTOR_MIX_ORDER_REDUCTION=0 inductor_log . nomix output_code
    pack 3 ;;
*)  echo "usage: gpu_session.sh 1|2|3" >&2; exit 2 ;;
esac
echo "call ${1} took $(elapsed) s"
