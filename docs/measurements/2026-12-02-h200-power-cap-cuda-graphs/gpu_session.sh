#!/usr/bin/env bash
# The three device calls of README.md beside this file, from the project root, one after another on
# one machine (it stays up about 30 s after a call):
#     bash ../shared/gpu-kernels/stage.sh && bash docs/prepared/2026-12-03-clocks-and-same-machine-anchor/stage.sh
#     bash docs/prepared/2026-12-03-clocks-and-same-machine-anchor/gpu_session.sh 1   # carry .gpu-kernels-a and .anchors
#     ... 2   # carry .gpu-kernels-b and .anchors, at once
#     ... 3   # carry .anchors, at once again: the kernels and the caches from 2 are still there
set -u
export PYTHONUNBUFFERED=1
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1"
LIMIT=570  # each call's own budget in seconds, under the device's 600
t0=$(date +%s)
elapsed() { echo $(( $(date +%s) - t0 )); }
left() { echo $(( LIMIT - $(elapsed) )); }
gpu_state() { nvidia-smi -q -d PERFORMANCE,POWER,CLOCK,TEMPERATURE > "$OUT/smi_$1.txt" 2>&1; grep -E -m 12 "Power Draw|Current Power Limit|Requested Power Limit|SW Power Capping|HW Slowdown|SW Thermal|HW Thermal|GPU Current Temp|^        SM  " "$OUT/smi_$1.txt"; }
clocks_on() { nvidia-smi dmon -s pc -d 1 -o T > "$OUT/dmon_$1.txt" 2>&1 & DMON=$!; }  # power, temperatures and clocks, once a second
clocks_off() { kill "$DMON" 2>/dev/null; wait "$DMON" 2>/dev/null; }
kernels_path() { export PYTHONPATH=/tmp/gk/site-packages:/tmp/gk/site-packages/nvidia_cutlass_dsl/dsl_packages; }
case "${1:-}" in
1)  # the card at rest; nanoGPT and PyTorch's kernels in turn, two rounds, the clocks read throughout
    mkdir -p /tmp/gk && cp .gpu-kernels-a/* /tmp/gk/
    gpu_state idle
    clocks_on call1
    timeout 420 python3 tools/bench_train.py d12 --nanogpt .anchors/nanoGPT --variant "--kernels pytorch" --repeat 2 --steps 25 \
        --json "$OUT/anchor_pytorch.json" -- $FLAGS
    clocks_off
    gpu_state after_call1
    ;;
2)  # the Hopper kernels; the caches filled; nanoGPT and auto in turn, two rounds, the clocks read
    cp .gpu-kernels-b/* /tmp/gk/ && bash /tmp/gk/install.sh || exit 1
    kernels_path
    timeout 250 python3 tools/bench_train.py d12 --steps 20 -- $FLAGS | grep '^| d12'   # fills the JIT caches
    echo "caches filled at $(elapsed) s"
    clocks_on call2
    timeout "$(( $(left) - 15 ))" python3 tools/bench_train.py d12 --nanogpt .anchors/nanoGPT --repeat 2 --steps 25 \
        --json "$OUT/anchor_auto.json" -- $FLAGS
    if [ "$(left)" -gt 100 ]; then  # the clocks with the host taken out: inductor's CUDA graphs
      TORCHINDUCTOR_CUDAGRAPHS=1 timeout "$(( $(left) - 10 ))" python3 tools/bench_train.py d12 --steps 25 --json "$OUT/cudagraphs.json" -- $FLAGS | grep '^| d12'
    fi
    clocks_off
    gpu_state after_call2
    ;;
3)  # every kernel, with and without CUDA graphs (inductor's code for the first); MLA against d12 in turn
    kernels_path
    clocks_on call3
    TORCH_LOGS=output_code timeout 200 python3 tools/profile_train.py --top 200 --warmup 10 --timed 20 --steps 3 -- --model d12 $FLAGS \
        > "$OUT/profile_auto.txt" 2> "$OUT/output_code.txt"
    grep -E "^first step|ms/step \(mean|^host|^profiled|^GPU idle" "$OUT/profile_auto.txt"
    TORCHINDUCTOR_CUDAGRAPHS=1 timeout 200 python3 tools/profile_train.py --top 200 --warmup 10 --timed 20 --steps 3 -- --model d12 $FLAGS \
        > "$OUT/profile_cudagraphs.txt" 2>&1
    grep -E "^first step|ms/step \(mean|^host|^profiled|^GPU idle" "$OUT/profile_cudagraphs.txt"
    echo "profiles done at $(elapsed) s"
    # sustained: 300 steps of nanoGPT and of d12 in turn (a 400-step d12 run was 2-3% below the
    # 25-step benchmarks on the fourth H200)
    timeout "$(( $(left) - 15 ))" python3 tools/bench_train.py d12 --nanogpt .anchors/nanoGPT --steps 300 --json "$OUT/sustained.json" -- $FLAGS
    echo "sustained runs done at $(elapsed) s"
    if [ "$(left)" -gt 200 ]; then
      timeout 120 python3 tools/bench_train.py d12_flash_mla --steps 20 -- $FLAGS | grep '^| d12'   # fills MLA's JIT caches
      timeout "$(( $(left) - 15 ))" python3 tools/bench_train.py d12_flash_mla --steps 25 --json "$OUT/mla.json" -- $FLAGS
    fi
    clocks_off
    ;;
*)  echo "usage: gpu_session.sh 1|2|3" >&2; exit 2 ;;
esac
echo "call ${1} took $(elapsed) s"
