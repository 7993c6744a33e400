#!/usr/bin/env bash
# The device calls of README.md beside this file, on one nvidia-h100-x1 machine, from the project root,
# each right after the one before (the machine stays up about 30 s after a call):
#     bash ../shared/gpu-kernels/stage.sh                                            # .gpu-kernels-a, -b
#     bash docs/measurements/2026-12-02-h200-power-cap-cuda-graphs/stage.sh          # .anchors/nanoGPT
#     bash docs/measurements/2026-12-06-h100-anchor-named-configs-mla-strided/gpu_session.sh 1   # carry .gpu-kernels-a, .anchors
#     ... 2   # carry .gpu-kernels-b, .anchors
#     ... 3   # carry .anchors: the kernels and the caches from 2 are still there
#     ... 4   # carry .anchors, if device time is left
# The working tree is the trainer as it is ("before"); /tmp/after is a copy with the diff beside this
# file applied (MLA's slotted keys and values, the slots written through as_strided).
set -u
export PYTHONUNBUFFERED=1
HERE=docs/measurements/2026-12-06-h100-anchor-named-configs-mla-strided
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
LIMIT=${LIMIT:-570}  # each call's own budget in seconds, under the device's 600
ANCHOR=${ANCHOR---nanogpt .anchors/nanoGPT}  # ANCHOR= leaves nanoGPT out (on a machine where it was measured before)
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
pack() { tar -czf "$OUT/results_$1.tgz" -C /tmp/res . ; }  # one file back, whatever the count of runs
case "${1:-}" in
1)  # the card at rest; nanoGPT and d12 on PyTorch's kernels (the Hopper kernels are not installed yet)
    mkdir -p /tmp/gk && cp .gpu-kernels-a/* /tmp/gk/
    nvidia-smi -q -d PERFORMANCE,POWER,CLOCK,TEMPERATURE > "$OUT/smi_idle.txt" 2>&1
    grep -E -m 6 "Product Name|Current Power Limit|^        SM  " "$OUT/smi_idle.txt"; nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv
    [ -z "$ANCHOR" ] || bench . pytorch_kernels 25 d12 $ANCHOR --variant "--kernels pytorch"
    pack 1 ;;
2)  # the kernels; the JIT caches filled (d12 first, from empty caches); the diff's GPU tests
    cp .gpu-kernels-b/* /tmp/gk/ && bash /tmp/gk/install.sh || exit 1
    kernels_path
    rm -rf /tmp/after && cp -r . /tmp/after && patch -s -d /tmp/after -p1 < $HERE/mla_slotted_kv_as_strided.diff || exit 1
    bench . fill_d12 20 d12
    bench . fill_mla_before 20 d12_flash_mla
    bench /tmp/after fill_mla_after 20 d12_flash_mla
    bench . fill_window 20 d12_sliding_window
    (cd /tmp/after && timeout -s INT $(( $(left) - 10 )) python3 -m pytest -q -m gpu -rfEs tests/test_hopper_kernels.py -k mla > "$OUT/tests_mla_after.txt" 2>&1)
    tail -3 "$OUT/tests_mla_after.txt"
    pack 2 ;;
3)  # two rounds in turn: nanoGPT and d12, MLA before, MLA after, the window; then 200 steps of nanoGPT and d12
    kernels_path
    for r in 1 2; do
      bench . "anchor_d12_$r" 25 d12 $ANCHOR
      bench . "mla_before_$r" 25 d12_flash_mla
      bench /tmp/after "mla_after_$r" 25 d12_flash_mla
      bench . "window_$r" 25 d12_sliding_window
    done
    bench . sustained 200 d12 $ANCHOR
    pack 3 ;;
4)  # a third round of MLA before and after, and of nanoGPT and d12
    kernels_path
    bench . mla_before_3 25 d12_flash_mla
    bench /tmp/after mla_after_3 25 d12_flash_mla
    bench . anchor_d12_3 25 d12 $ANCHOR
    pack 4 ;;
*)  echo "usage: gpu_session.sh 1|2|3|4" >&2; exit 2 ;;
esac
echo "call ${1} took $(elapsed) s"
