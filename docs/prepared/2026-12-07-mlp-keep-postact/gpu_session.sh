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
export PYTHONUNBUFFERED=1
DIFF=docs/measurements/2026-12-06-h100-mlp-keep-postact/mlp_keep_postact.diff
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
LIMIT=${LIMIT:-570}  # each call's own budget in seconds, under the device's 600
t0=$(date +%s)
elapsed() { echo $(( $(date +%s) - t0 )); }
left() { echo $(( LIMIT - $(elapsed) )); }
kernels_path() { export PYTHONPATH=/tmp/gk/site-packages:/tmp/gk/site-packages/nvidia_cutlass_dsl/dsl_packages; }
mkdir -p /tmp/res
bench() {  # bench DIR NAME STEPS BENCH_ARGS...: one bench_train.py call from the tree in DIR, if time is left
    local dir=$1 name=$2 steps=$3; shift 3
    local budget=$(( $(left) - 5 ))
    if [ "$budget" -lt 60 ]; then echo "$name: skipped at $(elapsed) s"; return; fi
    (cd "$dir" && timeout "$budget" python3 tools/bench_train.py "$@" --steps "$steps" --json "/tmp/res/$name.json" -- $FLAGS | grep -E '^\| (d12|nanoGPT)')
    echo "$name ended at $(elapsed) s"
}
profile() {  # profile DIR NAME: d12's step by kernel, under CUDA graphs, from the tree in DIR, if time is left
    local budget=$(( $(left) - 5 ))
    if [ "$budget" -lt 60 ]; then echo "$2: skipped at $(elapsed) s"; return; fi
    (cd "$1" && timeout "$budget" python3 tools/profile_train.py --warmup 10 --timed 20 --steps 3 --top 60 -- --model d12 $FLAGS > "/tmp/res/profile_$2.txt" 2>&1)
    grep -E "first step|ms/step|^\| [a-zA-Z(]" "/tmp/res/profile_$2.txt" | head -12; echo "$2 ended at $(elapsed) s"
}
pack() { tar -czf "$OUT/results_$1.tgz" -C /tmp/res . ; }  # one file back, whatever the count of runs
case "${1:-}" in
1)  # the first half of the kernels; the card at rest
    mkdir -p /tmp/gk && cp .gpu-kernels-a/* /tmp/gk/
    nvidia-smi -q -d PERFORMANCE,POWER,CLOCK,TEMPERATURE > "$OUT/smi_idle.txt" 2>&1
    nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv ;;
2)  # the kernels; the tree; rounds 1 and 2 in turn (the second the other way round)
    cp .gpu-kernels-b/* /tmp/gk/ && bash /tmp/gk/install.sh > /tmp/install.txt 2>&1 || { tail -5 /tmp/install.txt; exit 1; }
    kernels_path
    rm -rf /tmp/new && cp -r . /tmp/new && patch -s -d /tmp/new -p1 < "$DIFF" || exit 1
    bench . anchor_before_1 25 d12 --nanogpt .anchors/nanoGPT
    bench /tmp/new new_1 25 d12
    bench /tmp/new new_2 25 d12
    bench . before_2 25 d12
    pack 2 ;;
3)  # round 3; then the GPU tests of the new tree (the MLP against PyTorch's; the clip's CUDA case)
    kernels_path
    bench . anchor_before_3 25 d12 --nanogpt .anchors/nanoGPT
    bench /tmp/new new_3 25 d12
    [ "$(left)" -lt 120 ] && { echo "tests: skipped at $(elapsed) s"; pack 3; exit 0; }
    (cd /tmp/new && timeout -s INT $(( $(left) - 10 )) python3 -m pytest -q -m gpu -rA tests/test_hopper_kernels.py tests/test_model.py \
        -k "quack_mlp or clip" -p no:warnings > /tmp/res/tests_gpu.txt 2>&1; echo "pytest exit status $?" >> /tmp/res/tests_gpu.txt)
    grep -E "^(PASSED|FAILED|ERROR)|passed|failed|exit status" /tmp/res/tests_gpu.txt | tail -14
    # how large the JIT caches are: whether a later session could carry them and skip the first compilation
    du -sh /tmp/root/quack_cache /tmp/root/flash_attention_cute_dsl_cache /tmp/torchinductor_root 2>&1 | tee /tmp/res/jit_cache_sizes.txt
    pack 3 ;;
4)  # both trees' d12 under the profiler; MLA before and new; the MLP alone, if time is left
    kernels_path
    profile /tmp/new new
    profile . before
    bench . mla_before_1 25 d12_flash_mla
    bench /tmp/new mla_new_1 25 d12_flash_mla
    (cd /tmp/new && timeout $(( $(left) - 5 )) python3 tools/bench_quack_mlp.py > /tmp/res/bench_quack_mlp.txt 2>&1)
    grep -E '^\|' /tmp/res/bench_quack_mlp.txt
    pack 4 ;;
*)  echo "usage: gpu_session.sh 1|2|3|4" >&2; exit 2 ;;
esac
echo "call ${1} took $(elapsed) s"
