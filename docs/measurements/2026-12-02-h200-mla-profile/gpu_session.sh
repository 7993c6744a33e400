#!/usr/bin/env bash
# As run on 2026-12-02, 17:41-17:48 UTC, from docs/prepared/2026-12-03-mla-profile/ (calls 1 and 2;
# a third call, right after, ran the Hopper GPU tests not yet run on 1.10.1: see README.md).
# The two device calls of README.md beside this file, from the project root, one right after the
# other on one machine (it stays up about 30 s after a call):
#     bash ../shared/gpu-kernels/stage.sh                       # .gpu-kernels-a, -b
#     bash docs/prepared/2026-12-03-mla-profile/gpu_session.sh 1   # carry .gpu-kernels-a
#     bash docs/prepared/2026-12-03-mla-profile/gpu_session.sh 2   # carry .gpu-kernels-b, at once
set -u
export PYTHONUNBUFFERED=1
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
LIMIT=${LIMIT:-570}  # the call's own budget in seconds, under the device's 600
t0=$(date +%s)
left() { echo $(( LIMIT - ($(date +%s) - t0) )); }
profile() {  # profile CONFIG: the step's GPU time by kernel, under CUDA graphs, if time is left
    local budget=$(( $(left) - 5 ))
    if [ "$budget" -lt 60 ]; then echo "$1: skipped"; return; fi
    timeout "$budget" python3 tools/profile_train.py --warmup 10 --timed 20 --steps 3 --top 40 -- --model "$1" $FLAGS > "$OUT/profile_$1.txt" 2>&1
    grep -E "first step|ms/step|^\| [a-zA-Z(]" "$OUT/profile_$1.txt" | head -12
}
case "${1:-}" in
1)  mkdir -p /tmp/gk && cp .gpu-kernels-a/* /tmp/gk/ ;;
2)  cp .gpu-kernels-b/* /tmp/gk/ && bash /tmp/gk/install.sh || exit 1
    export PYTHONPATH=/tmp/gk/site-packages:/tmp/gk/site-packages/nvidia_cutlass_dsl/dsl_packages
    profile d12_flash_mla  # first: it fills the FA4 and quack caches from empty (about 170 s)
    profile d12
    ;;
*)  echo "usage: gpu_session.sh 1|2" >&2; exit 2 ;;
esac
echo "call ${1} took $(( $(date +%s) - t0 )) s"
