#!/usr/bin/env bash
# As run on 2026-12-02 (11:27-12:45 UTC), from docs/prepared/2026-12-03-mla-queries-in-place/; its
# mla_queries_in_place.diff is now commit 5f61e88. Calls 1, 2, 3, then 1 and 4-fresh on a new machine.
# The four device calls of README.md beside this file, from the project root, one after another on
# one machine (it stays up about 30 s after a call):
#     bash ../shared/gpu-kernels/stage.sh                                         # .gpu-kernels-a, -b
#     bash docs/prepared/2026-12-03-mla-queries-in-place/gpu_session.sh 1   # carry .gpu-kernels-a
#     ... 2   # carry .gpu-kernels-b, at once
#     ... 3   # at once again: the kernels and the caches from 2 are still there
#     ... 4   # likewise
#     ... 5   # likewise, if device time is left: a profile of MLA with the diff
# The working tree is the trainer as it is ("before"); /tmp/after is a copy with the diff applied.
set -u
export PYTHONUNBUFFERED=1
HERE=docs/prepared/2026-12-03-mla-queries-in-place
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
gpu_tests() {  # gpu_tests NAME SECONDS PYTEST-ARGS...: in /tmp/after; SIGINT, so pytest still reports
    local name=$1 seconds=$2; shift 2
    (cd /tmp/after && timeout -s INT "$seconds" python3 -m pytest -q -m gpu -rfEs "$@" > "$OUT/$name.txt" 2>&1)
    tail -3 "$OUT/$name.txt"; echo "$name ended at $(elapsed) s"
}
case "${1:-}" in
1)  mkdir -p /tmp/gk && cp .gpu-kernels-a/* /tmp/gk/ ;;
2)  # the kernels; the JIT caches filled for both trees (about 170 s for the first, from empty)
    cp .gpu-kernels-b/* /tmp/gk/ && bash /tmp/gk/install.sh || exit 1
    kernels_path
    rm -rf /tmp/after && cp -r . /tmp/after && patch -s -d /tmp/after -p1 < $HERE/mla_queries_in_place.diff || exit 1
    bench . fill_before 20 d12_flash_mla
    bench /tmp/after fill_after 20 d12_flash_mla
    bench . fill_d12 20 d12
    ;;
3)  # the diff's GPU tests, then MLA before and after in turn, d12 in each round for the ratio
    kernels_path
    gpu_tests tests_mla 240 tests/test_hopper_kernels.py -k mla
    for round in 1 2; do
      bench . "d12_$round" 25 d12
      bench . "before_$round" 25 d12_flash_mla
      bench /tmp/after "after_$round" 25 d12_flash_mla
    done
    ;;
4)  # a third round, 200 steps of each side, then the rest of the Hopper tests on the diff
    kernels_path
    bench . before_3 25 d12_flash_mla
    bench /tmp/after after_3 25 d12_flash_mla
    bench . before_200 200 d12_flash_mla
    bench /tmp/after after_200 200 d12_flash_mla
    gpu_tests tests_hopper "$(( $(left) - 10 ))" tests/test_hopper_kernels.py
    ;;
4-fresh)  # call 4 came too late after call 3 and found the machine given back, with too little
    # device time left for all of 4: on a fresh one, after call 1 again, the kernels, a third round from empty
    # caches, then the rest of the Hopper tests on the diff in the time left
    cp .gpu-kernels-b/* /tmp/gk/ && bash /tmp/gk/install.sh || exit 1
    kernels_path
    rm -rf /tmp/after && cp -r . /tmp/after && patch -s -d /tmp/after -p1 < $HERE/mla_queries_in_place.diff || exit 1
    bench . before_3 25 d12_flash_mla
    bench /tmp/after after_3 25 d12_flash_mla
    gpu_tests tests_hopper "$(( $(left) - 10 ))" tests/test_hopper_kernels.py -k "not mla"
    ;;
5)  # where the step's GPU time goes with the diff, for the lever after it (if device time is left)
    kernels_path
    (cd /tmp/after && timeout $(( $(left) - 5 )) python3 tools/profile_train.py --warmup 10 --timed 20 --steps 3 -- --model d12_flash_mla $FLAGS > "$OUT/profile_after.txt" 2>&1)
    tail -60 "$OUT/profile_after.txt"
    ;;
*)  echo "usage: gpu_session.sh 1|2|3|4|5" >&2; exit 2 ;;
esac
echo "call ${1} took $(elapsed) s"
