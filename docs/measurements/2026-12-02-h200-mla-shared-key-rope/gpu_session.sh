#!/usr/bin/env bash
# As run on 2026-12-02, 17:50-18:10 UTC, from docs/prepared/2026-12-02-mla-shared-key-rope/, whose
# mla_shared_key_rope.diff is now the commit of 1.10.2. Call 2 found a fresh machine and failed at
# its first cp; calls 1 and 2 were run again, then 3 with LIMIT=560.
# The three device calls of README.md beside this file, from the project root, one right after the
# other on one machine (it stays up about 30 s after a call):
#     bash ../shared/gpu-kernels/stage.sh                                  # .gpu-kernels-a, -b
#     bash docs/prepared/2026-12-02-mla-shared-key-rope/gpu_session.sh 1   # carry .gpu-kernels-a
#     ... 2   # carry .gpu-kernels-b, at once
#     ... 3   # at once again: the kernels and the caches from 2 are still there
# The working tree has the diff applied ("after"); /tmp/before is a copy with it taken out.
set -u
export PYTHONUNBUFFERED=1
HERE=docs/prepared/2026-12-02-mla-shared-key-rope
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
2)  # the kernels; the JIT caches filled for both trees (the first from empty), then the diff's GPU tests
    cp .gpu-kernels-b/* /tmp/gk/ && bash /tmp/gk/install.sh || exit 1
    kernels_path
    rm -rf /tmp/before && cp -r . /tmp/before && patch -s -R -d /tmp/before -p1 < $HERE/mla_shared_key_rope.diff || exit 1
    bench /tmp/before fill_before 20 d12_flash_mla
    bench . fill_after 20 d12_flash_mla
    bench . fill_d12 20 d12
    timeout -s INT $(( $(left) - 10 )) python3 -m pytest -q -m gpu -rfEs tests/test_hopper_kernels.py -k mla > "$OUT/tests_mla.txt" 2>&1
    tail -3 "$OUT/tests_mla.txt"
    ;;
3)  # rounds of d12, MLA before and MLA after in turn, then a profile of MLA after
    kernels_path
    for round in 1 2 3; do
      [ "$round" = 3 ] || bench . "d12_$round" 25 d12
      bench /tmp/before "before_$round" 25 d12_flash_mla
      bench . "after_$round" 25 d12_flash_mla
    done
    budget=$(( $(left) - 5 ))
    [ "$budget" -lt 60 ] || timeout "$budget" python3 tools/profile_train.py --warmup 10 --timed 20 --steps 3 --top 40 -- --model d12_flash_mla $FLAGS > "$OUT/profile_after.txt" 2>&1
    grep -E "ms/step|^\| [a-zA-Z(]" "$OUT/profile_after.txt" | head -10
    ;;
*)  echo "usage: gpu_session.sh 1|2|3" >&2; exit 2 ;;
esac
echo "call ${1} took $(elapsed) s"
