#!/usr/bin/env bash
# The device calls of README.md beside this file, from the project root, each right after the one
# before on one machine (it stays up about 30 s after a call):
#     bash ../shared/gpu-kernels/stage.sh                                         # .gpu-kernels-a, -b
#     bash docs/measurements/2026-12-02-h200-power-cap-cuda-graphs/stage.sh       # .anchors/nanoGPT
#     bash docs/prepared/2026-12-07-mlp-dbias-profile/gpu_session.sh 1   # carry .gpu-kernels-a, .anchors
#     ... 2   # carry .gpu-kernels-b, .anchors, at once
#     ... 3   # carry .anchors: the kernels and caches of call 2 are still there
# The working tree is the trainer as it is ("before"); /tmp/mlp is it with the MLP diff of
# docs/measurements/2026-12-06-h100-mlp-dbias-clip/ applied.
set -u
export PYTHONUNBUFFERED=1
DIFF=docs/measurements/2026-12-06-h100-mlp-dbias-clip/mlp_dbias_epilogue.diff
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
LIMIT=${LIMIT:-570}  # each call's own budget in seconds, under the device's 600
t0=$(date +%s)
elapsed() { echo $(( $(date +%s) - t0 )); }
left() { echo $(( LIMIT - $(elapsed) )); }
kernels_path() { export PYTHONPATH=/tmp/gk/site-packages:/tmp/gk/site-packages/nvidia_cutlass_dsl/dsl_packages; }
profile() {  # profile DIR NAME: d12's step by kernel, under CUDA graphs, from the tree in DIR, if time is left
    local budget=$(( $(left) - 5 ))
    if [ "$budget" -lt 60 ]; then echo "$2: skipped at $(elapsed) s"; return; fi
    (cd "$1" && timeout "$budget" python3 tools/profile_train.py --warmup 10 --timed 20 --steps 3 --top 60 -- --model d12 $FLAGS > "$OUT/profile_$2.txt" 2>&1)
    grep -E "first step|ms/step|^\| [a-zA-Z(]" "$OUT/profile_$2.txt" | head -12; echo "$2 ended at $(elapsed) s"
}
bench() {  # bench DIR NAME STEPS BENCH_ARGS...: one bench_train.py call from the tree in DIR, if time is left
    local dir=$1 name=$2 steps=$3; shift 3
    local budget=$(( $(left) - 5 ))
    if [ "$budget" -lt 60 ]; then echo "$name: skipped at $(elapsed) s"; return; fi
    (cd "$dir" && timeout "$budget" python3 tools/bench_train.py "$@" --steps "$steps" --json "$OUT/$name.json" -- $FLAGS | grep -E '^\| (d12|nanoGPT)')
    echo "$name ended at $(elapsed) s"
}
case "${1:-}" in
1)  mkdir -p /tmp/gk && cp .gpu-kernels-a/* /tmp/gk/
    nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv ;;
2)  # the kernels; GPU tests of the optimizer step on 1.10.4 (the clip's CUDA case, fused AdamW, training under CUDA graphs); the two profiles
    cp .gpu-kernels-b/* /tmp/gk/ && bash /tmp/gk/install.sh > /tmp/install.txt 2>&1 || { tail -5 /tmp/install.txt; exit 1; }
    kernels_path
    rm -rf /tmp/mlp && cp -r . /tmp/mlp && patch -s -d /tmp/mlp -p1 < $DIFF || exit 1
    timeout -s INT 240 python3 -m pytest -q -m gpu -rfEs tests/test_model.py tests/test_gpu.py -k "clip or adamw or cuda_graphs_train or compile_learns" > "$OUT/tests_gpu.txt" 2>&1
    tail -3 "$OUT/tests_gpu.txt"
    profile . before   # first: it fills the caches from empty
    profile /tmp/mlp mlp ;;
3)  # 200 steps of nanoGPT and d12 in turn (the step's energy at the power limit)
    kernels_path
    bench . sustained 200 d12 --nanogpt .anchors/nanoGPT ;;
*)  echo "usage: gpu_session.sh 1|2|3" >&2; exit 2 ;;
esac
echo "call ${1} took $(elapsed) s"
