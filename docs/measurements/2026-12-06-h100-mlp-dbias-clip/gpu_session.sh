#!/usr/bin/env bash
# The device calls of PLAN.md beside this file, on one H100 (or H200) machine, from the project root,
# each right after the one before (the machine stays up about 30 s after a call):
#     bash ../shared/gpu-kernels/stage.sh                                            # .gpu-kernels-a, -b
#     bash docs/measurements/2026-12-02-h200-power-cap-cuda-graphs/stage.sh          # .anchors/nanoGPT
#     bash docs/measurements/2026-12-06-h100-mlp-dbias-clip/gpu_session.sh 1   # carry .gpu-kernels-a, .anchors
#     ... 2   # carry .gpu-kernels-b, .anchors
#     ... 3, 4, 5   # carry .anchors: the kernels and caches of the calls before are still there
# The working tree is the trainer as it is ("before", 1.10.3). Three copies get the diffs beside
# this file: /tmp/clip (clip_grad_scale.diff), /tmp/mlp (mlp_dbias_epilogue.diff), /tmp/both (both).
set -u
export PYTHONUNBUFFERED=1
HERE=docs/measurements/2026-12-06-h100-mlp-dbias-clip
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
    if [ "$dir" != . ] && [ ! -d "$dir" ]; then echo "$name: no tree $dir"; return; fi
    (cd "$dir" && timeout "$budget" python3 tools/bench_train.py "$@" --steps "$steps" --json "/tmp/res/$name.json" -- $FLAGS | grep -E '^\| (d12|nanoGPT)')
    echo "$name ended at $(elapsed) s"
}
pack() { tar -czf "$OUT/results_$1.tgz" -C /tmp/res . ; }  # one file back, whatever the count of runs
tree() {  # tree NAME DIFF...: a copy of the working tree with the diffs applied
    rm -rf "/tmp/$1" && cp -r . "/tmp/$1" || return 1
    local d; for d in "${@:2}"; do patch -s -d "/tmp/$1" -p1 < "$HERE/$d" || return 1; done
}
mlp_trees() {  # the MLP's trees only where its GPU tests passed (call 2 leaves /tmp/mlp_ok)
    [ -f /tmp/mlp_ok ] && echo "/tmp/mlp /tmp/both" || echo ""
}
case "${1:-}" in
1)  # the first half of the kernels; the card at rest
    mkdir -p /tmp/gk && cp .gpu-kernels-a/* /tmp/gk/
    nvidia-smi -q -d PERFORMANCE,POWER,CLOCK,TEMPERATURE > "$OUT/smi_idle.txt" 2>&1
    nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv ;;
2)  # the kernels; the trees; the MLP's GPU tests; then the MLP alone, timed by tools/bench_quack_mlp.py
    cp .gpu-kernels-b/* /tmp/gk/ && bash /tmp/gk/install.sh > /tmp/install.txt 2>&1 || { tail -5 /tmp/install.txt; exit 1; }
    kernels_path
    tree clip clip_grad_scale.diff && tree mlp mlp_dbias_epilogue.diff && tree both mlp_dbias_epilogue.diff clip_grad_scale.diff || exit 1
    (cd /tmp/both && timeout -s INT 300 python3 -m pytest -q -m gpu -rfEs tests/test_hopper_kernels.py -k "quack_mlp or compiles_into_the_model_graph" > "$OUT/tests_mlp.txt" 2>&1) && touch /tmp/mlp_ok
    tail -3 "$OUT/tests_mlp.txt"; echo "tests ended at $(elapsed) s"
    (cd /tmp/mlp && timeout $(( $(left) - 5 )) python3 tools/bench_quack_mlp.py > "$OUT/bench_quack_mlp.txt" 2>&1)
    grep -E '^\|' "$OUT/bench_quack_mlp.txt" ;;
3)  # round 1 in turn (each tree's first run compiles, from empty caches): nanoGPT and before, clip, mlp, both
    kernels_path
    bench . anchor_before_1 25 d12 --nanogpt .anchors/nanoGPT
    bench /tmp/clip clip_1 25 d12
    for t in $(mlp_trees); do bench "$t" "$(basename "$t")_1" 25 d12; done
    pack 3 ;;
4)  # round 2 in turn; then MLA before and both
    kernels_path
    bench . anchor_before_2 25 d12 --nanogpt .anchors/nanoGPT
    bench /tmp/clip clip_2 25 d12
    for t in $(mlp_trees); do bench "$t" "$(basename "$t")_2" 25 d12; done
    bench . mla_before_1 25 d12_flash_mla
    [ -f /tmp/mlp_ok ] && bench /tmp/both mla_both_1 25 d12_flash_mla
    pack 4 ;;
5)  # round 3 of d12, MLA's second round, if device time is left
    kernels_path
    [ -f /tmp/mlp_ok ] && bench /tmp/mlp mlp_3 25 d12
    [ -f /tmp/mlp_ok ] && bench /tmp/both both_3 25 d12
    bench . anchor_before_3 25 d12 --nanogpt .anchors/nanoGPT
    bench /tmp/clip clip_3 25 d12
    [ -f /tmp/mlp_ok ] && bench /tmp/both mla_both_2 25 d12_flash_mla
    bench . mla_before_2 25 d12_flash_mla
    pack 5 ;;
*)  echo "usage: gpu_session.sh 1|2|3|4|5" >&2; exit 2 ;;
esac
echo "call ${1} took $(elapsed) s"
