#!/usr/bin/env bash
# As run on 2026-12-02, about 21:45-21:59 UTC, from docs/prepared/2026-12-03-mla-slotted-kv/ (calls 1-3;
# a fourth call, right after, ran four more rounds of d12 and d12_flash_mla: see README.md).
# The three device calls of README.md beside this file, from the project root, one right after the
# other on one machine (it stays up about 30 s after a call):
#     bash ../shared/gpu-kernels/stage.sh                              # .gpu-kernels-a, -b
#     bash docs/prepared/2026-12-03-mla-slotted-kv/gpu_session.sh 1    # carry .gpu-kernels-a
#     ... 2   # carry .gpu-kernels-b, at once
#     ... 3   # at once again: the kernels and the caches from 2 are still there
# The working tree is the trainer as it is ("before"); /tmp/after is a copy with the diff applied.
# At most 8 files come back from a call: call 2 writes 5, call 3 writes 8.
set -u
export PYTHONUNBUFFERED=1
HERE=docs/prepared/2026-12-03-mla-slotted-kv
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
LIMIT=${LIMIT:-570}  # each call's own budget in seconds, under the device's 600
t0=$(date +%s)
elapsed() { echo $(( $(date +%s) - t0 )); }
left() { echo $(( LIMIT - $(elapsed) )); }
kernels_path() { export PYTHONPATH=/tmp/gk/site-packages:/tmp/gk/site-packages/nvidia_cutlass_dsl/dsl_packages; }
bench() {  # bench DIR NAME STEPS CONFIG: one bench_train.py run from the tree in DIR, if time is left
    local budget=$(( $(left) - 5 ))
    if [ "$budget" -lt 60 ]; then echo "$2: skipped at $(elapsed) s"; return; fi
    (cd "$1" && timeout "$budget" python3 tools/bench_train.py "$4" --steps "$3" --json "$OUT/$2.json" -- $FLAGS | grep '^| d12')
    echo "$2 ended at $(elapsed) s"
}
case "${1:-}" in
1)  mkdir -p /tmp/gk && cp .gpu-kernels-a/* /tmp/gk/ ;;
2)  # the kernels; the JIT caches filled for both trees (the first from empty); the diff's GPU tests;
    # a profile of MLA after, if time is left
    cp .gpu-kernels-b/* /tmp/gk/ && bash /tmp/gk/install.sh || exit 1
    kernels_path
    rm -rf /tmp/after && cp -r . /tmp/after && patch -s -d /tmp/after -p1 < $HERE/mla_slotted_kv.diff || exit 1
    bench . fill_before 20 d12_flash_mla
    bench /tmp/after fill_after 20 d12_flash_mla
    bench . fill_d12 20 d12
    (cd /tmp/after && timeout -s INT $(( $(left) - 80 )) python3 -m pytest -q -m gpu -rfEs tests/test_hopper_kernels.py -k mla > "$OUT/tests_mla.txt" 2>&1)
    tail -3 "$OUT/tests_mla.txt"
    budget=$(( $(left) - 5 ))
    [ "$budget" -lt 60 ] || (cd /tmp/after && timeout "$budget" python3 tools/profile_train.py --warmup 10 --timed 20 --steps 3 --top 40 -- --model d12_flash_mla $FLAGS > "$OUT/profile_after.txt" 2>&1)
    grep -E "ms/step|^\| [a-zA-Z(]" "$OUT/profile_after.txt" | head -10
    ;;
3)  # rounds of d12, MLA before and MLA after in turn
    kernels_path
    for round in 1 2 3; do
      [ "$round" = 3 ] || bench . "d12_$round" 25 d12
      bench . "before_$round" 25 d12_flash_mla
      bench /tmp/after "after_$round" 25 d12_flash_mla
    done
    ;;
*)  echo "usage: gpu_session.sh 1|2|3" >&2; exit 2 ;;
esac
echo "call ${1} took $(elapsed) s"
