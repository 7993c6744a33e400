#!/usr/bin/env bash
# The three device calls of README.md beside this file, from the project root, one after another on
# one machine (it stays up about 30 s after a call):
#     bash ../shared/gpu-kernels/stage.sh
#     bash docs/measurements/2026-12-01-h200-gaps-loss-chunks-host-lead/gpu_session.sh 1   # carry .gpu-kernels-a
#     ... 2   # carry .gpu-kernels-b, at once
#     ... 3   # at once again: the kernels and the caches from 2 are still there
set -u
export PYTHONUNBUFFERED=1
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1"
t0=$(date +%s)
elapsed() { echo $(( $(date +%s) - t0 )); }
bench() {  # bench NAME TRAINER_DIR CONFIG: one 25-step run, its row, its record in $OUT
    timeout 100 python3 "$2/tools/bench_train.py" "$3" --steps 25 --json "$OUT/$1.json" -- $FLAGS | grep '^| d12'
}
chunk_copy() {  # a copy of the trainer whose quack loss takes chunks of $1 rows (the PyTorch loss keeps its own)
    rm -rf "/tmp/chunk$1" && mkdir "/tmp/chunk$1" && cp -r tools data train_gpt2_mod.py "/tmp/chunk$1/"
    sed -i "s/chunk_size=LOSS_CHUNK_ROWS, ignore_index/chunk_size=$1, ignore_index/" "/tmp/chunk$1/train_gpt2_mod.py"
    grep -c "chunk_size=$1, ignore_index" "/tmp/chunk$1/train_gpt2_mod.py"
}

case "${1:-}" in
1)  # PyTorch's kernels (the Hopper kernels are not installed yet): the GPU tests, and the profiler's new gap table
    mkdir -p /tmp/gk && cp .gpu-kernels-a/* /tmp/gk/
    timeout 330 python3 -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider 2>&1 | tee "$OUT/test_gpu.txt" | tail -4
    timeout 150 python3 tools/profile_train.py --warmup 10 --timed 20 --steps 3 -- --model d12 $FLAGS --kernels pytorch > "$OUT/profile_d12_pytorch.txt" 2>&1
    tail -25 "$OUT/profile_d12_pytorch.txt"
    ;;
2)  # the Hopper kernels; the caches filled; where the GPU idles under auto; the first round of loss chunks
    cp .gpu-kernels-b/* /tmp/gk/ && bash /tmp/gk/install.sh || exit 1
    export PYTHONPATH=/tmp/gk/site-packages:/tmp/gk/site-packages/nvidia_cutlass_dsl/dsl_packages
    timeout 250 python3 tools/bench_train.py d12 --steps 20 -- $FLAGS | grep '^| d12'   # fills the JIT caches
    echo "caches filled at $(elapsed) s"
    timeout 150 python3 tools/profile_train.py --warmup 10 --timed 20 --steps 3 -- --model d12 $FLAGS > "$OUT/profile_d12_auto.txt" 2>&1
    sed -n '/GPU idle under/,$p' "$OUT/profile_d12_auto.txt"
    echo "profiled at $(elapsed) s"
    chunk_copy 8192 && chunk_copy 16384
    # round 1 compiles and tunes the new shapes: its figures do not count
    for rows in 8192 16384; do
      [ $(( 580 - $(elapsed) )) -gt 100 ] && bench "chunk${rows}_1" "/tmp/chunk$rows" d12
    done
    ;;
3)  # two more rounds of loss chunks, in turn; then MLA's profile
    export PYTHONPATH=/tmp/gk/site-packages:/tmp/gk/site-packages/nvidia_cutlass_dsl/dsl_packages
    for round in 2 3; do
      bench chunk4096_$round . d12; bench chunk8192_$round /tmp/chunk8192 d12; bench chunk16384_$round /tmp/chunk16384 d12
    done
    echo "chunks done at $(elapsed) s"
    left=$(( 580 - $(elapsed) )); [ "$left" -gt 90 ] && timeout "$left" python3 tools/profile_train.py --warmup 10 --timed 20 --steps 3 -- --model d12_flash_mla $FLAGS > "$OUT/profile_mla_auto.txt" 2>&1
    sed -n '/^d12_flash_mla/,/^| kernel kind/p;/GPU idle under/,$p' "$OUT/profile_mla_auto.txt"
    ;;
*)  echo "usage: gpu_session.sh 1|2|3" >&2; exit 2 ;;
esac
echo "stage ${1} took $(elapsed) s"
