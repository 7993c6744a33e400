#!/usr/bin/env bash
# The device calls of README.md beside this file, from the project root, each right after the one
# before on one machine (it stays up about 30 s after a call):
#     bash ../shared/gpu-kernels/stage.sh                                         # .gpu-kernels-a, -b
#     bash docs/measurements/2026-12-02-h200-power-cap-cuda-graphs/stage.sh       # .anchors/nanoGPT
#     bash docs/prepared/2026-12-07-mlp-keep-postact/gpu_session.sh 1   # carry .gpu-kernels-a, .anchors
#     ... 2   # carry .gpu-kernels-b, .anchors, at once
#     ... 3, 4   # carry .anchors: the kernels and caches of the calls before are still there
# The working tree is the trainer as it is ("before"); /tmp/new is it with the diff below applied.
# No run waits on the tests: they come after the runs, whose first steps compile the CuTe kernels
# the tests need (on a fresh machine that compilation alone outlasted a 240 s test timeout).
set -u
DIFF=docs/measurements/2026-12-06-h100-mlp-keep-postact/mlp_keep_postact.diff
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
. tools/device_session.sh
case "${1:-}" in
1)  # the first half of the kernels; the card at rest
    stage_kernels
    nvidia-smi -q -d PERFORMANCE,POWER,CLOCK,TEMPERATURE > "$OUT/smi_idle.txt" 2>&1
    nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv ;;
2)  # the kernels; the tree; rounds 1 and 2 in turn (the second the other way round)
    install_kernels || exit 1
    rm -rf /tmp/new && cp -r . /tmp/new && patch -s -d /tmp/new -p1 < "$DIFF" || exit 1
    bench . anchor_before_1 25 d12 --nanogpt .anchors/nanoGPT
    bench /tmp/new new_1 25 d12
    bench /tmp/new new_2 25 d12
    bench . before_2 25 d12
    pack 2 ;;
3)  # round 3; the GPU tests of the new tree (the MLP against PyTorch's; the clip's CUDA case); the JIT caches' sizes
    kernels_path
    bench . anchor_before_3 25 d12 --nanogpt .anchors/nanoGPT
    bench /tmp/new new_3 25 d12
    if [ "$(left)" -ge 120 ]; then
        (cd /tmp/new && timeout -s INT $(( $(left) - 10 )) python3 -m pytest -q -m gpu -rA -p no:warnings \
            tests/test_hopper_kernels.py tests/test_model.py -k "quack_mlp or clip" > "$RESULTS/tests_gpu.txt" 2>&1
         echo "pytest exit status $?" >> "$RESULTS/tests_gpu.txt")
        grep -E "^(PASSED|FAILED|ERROR)|passed|failed|exit status" "$RESULTS/tests_gpu.txt" | tail -14
    else
        echo "tests: skipped at $(elapsed) s"
    fi
    # whether a later session could carry the caches in and skip the first compilation
    du -sh /tmp/root/quack_cache /tmp/root/flash_attention_cute_dsl_cache /tmp/torchinductor_root 2>&1 | tee "$RESULTS/jit_cache_sizes.txt"
    pack 3 ;;
4)  # both trees' d12 under the profiler; MLA before and new; the MLP alone, if time is left
    kernels_path
    profile /tmp/new new
    profile . before
    bench . mla_before_1 25 d12_flash_mla
    bench /tmp/new mla_new_1 25 d12_flash_mla
    (cd /tmp/new && timeout $(( $(left) - 5 )) python3 tools/bench_quack_mlp.py > "$RESULTS/bench_quack_mlp.txt" 2>&1)
    grep -E '^\|' "$RESULTS/bench_quack_mlp.txt"
    pack 4 ;;
*)  echo "usage: gpu_session.sh 1|2|3|4" >&2; exit 2 ;;
esac
echo "call ${1} took $(elapsed) s"
