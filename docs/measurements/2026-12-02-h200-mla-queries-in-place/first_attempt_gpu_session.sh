#!/usr/bin/env bash
# Two device calls, one after the other on one machine (it stays up about 30 s after a call), from
# the project root, with .exp/train_gpt2_mod_before.py = the trainer at 752a18a (before the change):
#     bash docs/prepared/2026-12-02-mla-queries-in-place/gpu_session.sh 1 LIMIT   # carry .gpu-kernels-a and .exp
#     ... 2 LIMIT   # carry .gpu-kernels-b and .exp, at once
# LIMIT: the call's own budget in seconds.
set -u
export PYTHONUNBUFFERED=1
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
LIMIT=${2:-570}
t0=$(date +%s)
elapsed() { echo $(( $(date +%s) - t0 )); }
left() { echo $(( LIMIT - $(elapsed) )); }
bench() {  # bench DIR NAME: d12_flash_mla, 25 steps, from the tree in DIR
    local budget=$(( $(left) - 5 ))
    if [ "$budget" -lt 40 ]; then echo "$2: skipped, $(elapsed) s"; return; fi
    (cd "$1" && timeout "$budget" python3 tools/bench_train.py d12_flash_mla --steps 25 --json "$OUT/$2.json" -- $FLAGS | grep '^| d12')
    echo "$2 done at $(elapsed) s"
}
case "${1:-}" in
1)  mkdir -p /tmp/gk && cp .gpu-kernels-a/* /tmp/gk/ ;;
2)  cp .gpu-kernels-b/* /tmp/gk/ && bash /tmp/gk/install.sh || exit 1
    export PYTHONPATH=/tmp/gk/site-packages:/tmp/gk/site-packages/nvidia_cutlass_dsl/dsl_packages
    rm -rf /tmp/before && cp -r . /tmp/before && cp .exp/train_gpt2_mod_before.py /tmp/before/train_gpt2_mod.py
    timeout 150 python3 -m pytest -q -m gpu tests/test_hopper_kernels.py -k "mla" > "$OUT/tests.txt" 2>&1
    tail -3 "$OUT/tests.txt"; echo "tests done at $(elapsed) s"
    bench /tmp/before before_1
    bench . after_1
    bench /tmp/before before_2
    bench . after_2
    ;;
*)  echo "usage: gpu_session.sh 1|2 [LIMIT]" >&2; exit 2 ;;
esac
echo "call ${1} took $(elapsed) s"
