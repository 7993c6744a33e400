#!/usr/bin/env bash
# The device calls of PLAN.md beside this file, from the project root, each right after the one
# before on one machine (it stays up about 30 s after a call):
#     bash docs/measurements/2026-12-06-h100-mla-projections/gpu_session.sh 1   # carry .gpu-kernels-a
#     ... 2   # carry .gpu-kernels-b, at once
#     ... 3, 4   # carry nothing more: the kernels, trees and caches of the calls before are still there
#     ... 5, 6   # a fresh machine (PLAN.md's second addendum): carry .gpu-kernels-a, then -b at once
#     ... 7   # carry nothing more
# Arms: mla_new and d12 (the tree as carried), mla_before (/tmp/before: mla.diff reversed).
set -u
HERE=docs/measurements/2026-12-06-h100-mla-projections
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
. tools/device_session.sh
case "${1:-}" in
1)  # the first half of the kernels; the card at rest
    stage_kernels
    card_at_rest ;;
2)  # the kernels; the before tree; the GPU tests; a run of mla_new that fills the caches
    install_kernels || exit 1
    rm -rf /tmp/before && cp -r . /tmp/before && patch -s -R -d /tmp/before -p1 < $HERE/mla.diff || exit 1
    (timeout -s INT 330 python3 -m pytest -q -m gpu -rA -p no:warnings \
        "tests/test_hopper_kernels.py::test_mlas_rope_in_quacks_projections_matches_pytorchs_projections" \
        "tests/test_hopper_kernels.py::test_fast_kernels_and_pytorch_give_the_same_model[d12_flash_mla]" \
        "tests/test_hopper_kernels.py::test_mla_on_flash_attn4_matches_the_split_path" \
        "tests/test_gpu.py::test_compiles_without_graph_breaks[d12_flash_mla]" \
        "tests/test_hopper_kernels.py::test_fast_kernels_and_pytorch_give_the_same_model[d12]" > "$RESULTS/tests_gpu.txt" 2>&1
     echo "pytest exit status $?" >> "$RESULTS/tests_gpu.txt")
    grep -E "^(PASSED|FAILED|ERROR)|passed|failed|exit status|Error" "$RESULTS/tests_gpu.txt" | tail -20
    echo "tests ended at $(elapsed) s"
    bench . mla_new_fill 25 d12_flash_mla
    pack 2 ;;
3)  # mla_before's caches; round 1
    kernels_path
    bench /tmp/before mla_before_fill 25 d12_flash_mla
    bench . mla_new_1 25 d12_flash_mla
    bench /tmp/before mla_before_1 25 d12_flash_mla
    bench . d12_1 25 d12
    pack 3 ;;
4)  # round 2; both MLA trees under the profiler (PLAN.md's addendum)
    kernels_path
    bench /tmp/before mla_before_2 25 d12_flash_mla
    bench . mla_new_2 25 d12_flash_mla
    bench . d12_2 25 d12
    profile . mla_new d12_flash_mla
    profile /tmp/before mla_before d12_flash_mla
    pack 4 ;;
5)  # a fresh machine (PLAN.md's second addendum): the first half of the kernels
    stage_kernels ;;
6)  # the kernels; the before tree; the new test, compiled; each MLA tree filling its caches, then once more
    install_kernels || exit 1
    rm -rf /tmp/before && cp -r . /tmp/before && patch -s -R -d /tmp/before -p1 < $HERE/mla.diff || exit 1
    (timeout -s INT 120 python3 -m pytest -q -m gpu -rA -p no:warnings \
        "tests/test_hopper_kernels.py::test_mlas_rope_in_quacks_projections_matches_pytorchs_projections[True]" > "$RESULTS/tests_gpu_6.txt" 2>&1
     echo "pytest exit status $?" >> "$RESULTS/tests_gpu_6.txt")
    grep -E "^(PASSED|FAILED|ERROR)|passed|failed|exit status|Error" "$RESULTS/tests_gpu_6.txt" | tail -5
    echo "tests ended at $(elapsed) s"
    bench . mla_fix_fill 25 d12_flash_mla
    bench /tmp/before mla_before_fill_6 25 d12_flash_mla
    bench . mla_fix_1 25 d12_flash_mla
    bench /tmp/before mla_before_6 25 d12_flash_mla
    pack 6 ;;
7)  # with the device time left (158 s), on the same machine: d12 once (run as a one-line command,
    # LIMIT=140, with the FLAGS above; written here as it ran)
    kernels_path
    bench . d12_6 25 d12
    pack 7 ;;
*)  echo "usage: gpu_session.sh 1|2|3|4|5|6|7" >&2; exit 2 ;;
esac
echo "call ${1} took $(elapsed) s"
