#!/usr/bin/env bash
# The device calls of README.md beside this file, from the project root, each right after the one
# before on one machine (it stays up about 30 s after a call):
#     bash ../shared/gpu-kernels/stage.sh                                          # .gpu-kernels-a, -b
#     bash docs/prepared/2026-12-07-h100-1.12.0-targets-pdl/gpu_session.sh 1   # carry .gpu-kernels-a, .anchors
#     ... 2   # carry .gpu-kernels-b, .anchors, at once
#     ... 3   # carry .anchors: the kernels and caches of the calls before are still there
# One tree (the trainer as it is); the arms differ by environment only: "default", and "pdl" with
# Inductor's programmatic dependent launch on (TORCHINDUCTOR_ENABLE_PDL=1).
set -u
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
. tools/device_session.sh
case "${1:-}" in
1)  # the first half of the kernels; the card at rest
    stage_kernels
    card_at_rest ;;
2)  # the kernels; a run that fills the caches; rounds 1 and 2 of d12, nanoGPT first in each
    install_kernels || exit 1
    bench . fill 25 d12
    bench . default_1 25 d12 --nanogpt .anchors/nanoGPT
    TORCHINDUCTOR_ENABLE_PDL=1 bench . pdl_1 25 d12
    TORCHINDUCTOR_ENABLE_PDL=1 bench . pdl_2 25 d12 --nanogpt .anchors/nanoGPT
    bench . default_2 25 d12
    pack 2 ;;
3)  # round 3; the window and MLA (the other targets); d12 under the profiler
    kernels_path
    bench . default_3 25 d12 --nanogpt .anchors/nanoGPT
    TORCHINDUCTOR_ENABLE_PDL=1 bench . pdl_3 25 d12
    bench . window_1 25 d12_sliding_window
    bench . mla_1 25 d12_flash_mla
    profile . default
    bench . mla_2 25 d12_flash_mla
    bench . window_2 25 d12_sliding_window
    pack 3 ;;
*)  echo "usage: gpu_session.sh 1|2|3" >&2; exit 2 ;;
esac
echo "call ${1} took $(elapsed) s"
