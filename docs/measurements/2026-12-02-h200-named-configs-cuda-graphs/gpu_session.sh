#!/usr/bin/env bash
# The three device calls of README.md beside this file, from the project root, one after another on
# one machine (it stays up about 30 s after a call):
#     bash ../shared/gpu-kernels/stage.sh
#     bash docs/measurements/2026-12-02-h200-power-cap-cuda-graphs/stage.sh   # .anchors/nanoGPT
#     bash docs/prepared/2026-12-03-named-configs-under-cuda-graphs/gpu_session.sh 1   # carry .gpu-kernels-a and .anchors
#     ... 2   # carry .gpu-kernels-b and .anchors, at once
#     ... 3   # at once again: the kernels and the caches from 2 are still there
set -u
export PYTHONUNBUFFERED=1
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1"
CONFIGS="d12 d12_flash_mla d12_sliding_window"
LIMIT=570  # each call's own budget in seconds, under the device's 600
t0=$(date +%s)
elapsed() { echo $(( $(date +%s) - t0 )); }
left() { echo $(( LIMIT - $(elapsed) )); }
kernels_path() { export PYTHONPATH=/tmp/gk/site-packages:/tmp/gk/site-packages/nvidia_cutlass_dsl/dsl_packages; }
case "${1:-}" in
1)  # the GPU tests of tests/test_gpu.py (PyTorch's kernels: the Hopper kernels are not installed yet)
    mkdir -p /tmp/gk && cp .gpu-kernels-a/* /tmp/gk/
    timeout "$(( $(left) - 10 ))" python3 -m pytest -q -m gpu tests/test_gpu.py > "$OUT/test_gpu.txt" 2>&1
    tail -3 "$OUT/test_gpu.txt"
    ;;
2)  # the Hopper kernels; each config's JIT caches filled under CUDA graphs
    cp .gpu-kernels-b/* /tmp/gk/ && bash /tmp/gk/install.sh || exit 1
    kernels_path
    for config in $CONFIGS; do
      timeout "$(( $(left) - 10 ))" python3 tools/bench_train.py "$config" --steps 20 -- $FLAGS --cuda_graphs 1 | grep '^| d12'
      echo "$config's caches filled at $(elapsed) s"
    done
    ;;
3)  # the three configs in turn under CUDA graphs, two rounds; then 200 steps of d12 and MLA
    kernels_path
    timeout 330 python3 tools/bench_train.py $CONFIGS --repeat 2 --steps 25 --json "$OUT/configs.json" -- $FLAGS --cuda_graphs 1
    echo "rounds done at $(elapsed) s"
    if [ "$(left)" -gt 130 ]; then
      timeout "$(( $(left) - 10 ))" python3 tools/bench_train.py d12 d12_flash_mla --steps 200 --json "$OUT/sustained.json" -- $FLAGS --cuda_graphs 1
    fi
    ;;
*)  echo "usage: gpu_session.sh 1|2|3" >&2; exit 2 ;;
esac
echo "call ${1} took $(elapsed) s"
