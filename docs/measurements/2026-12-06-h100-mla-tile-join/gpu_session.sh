#!/usr/bin/env bash
# The device calls of PLAN.md beside this file, from the project root, each right after the one
# before on one machine (it stays up about 30 s after a call):
#     bash docs/measurements/2026-12-06-h100-mla-tile-join/gpu_session.sh 1   # carry .gpu-kernels-a
#     ... 2   # carry .gpu-kernels-b, at once
#     ... 3   # carry nothing more
#     ... 4   # carry nothing more (added after call 3)
# Arms: both and d12 (the tree as carried), tile (/tmp/tile), before (/tmp/before).
set -u
HERE=docs/measurements/2026-12-06-h100-mla-tile-join
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
. tools/device_session.sh
case "${1:-}" in
1)  stage_kernels
    card_at_rest ;;
2)  install_kernels || exit 1
    rm -rf /tmp/tile /tmp/before && cp -r . /tmp/tile && patch -s -R -d /tmp/tile -p1 < $HERE/join.diff || exit 1
    cp -r /tmp/tile /tmp/before && patch -s -R -d /tmp/before -p1 < $HERE/tile.diff || exit 1
    (timeout -s INT 150 python3 -m pytest -q -m gpu -rA -p no:warnings \
        "tests/test_hopper_kernels.py::test_flash_attn4_matches_fp32_attention[96-64-0]" \
        "tests/test_hopper_kernels.py::test_mlas_rope_in_quacks_projections_matches_pytorchs_projections[True]" \
        "tests/test_hopper_kernels.py::test_fast_kernels_and_pytorch_give_the_same_model[d12_flash_mla]" \
        "tests/test_hopper_kernels.py::test_flash_attn4_compiles_into_the_model_graph[d12_flash_mla]" > "$RESULTS/tests_gpu.txt" 2>&1
     echo "pytest exit status $?" >> "$RESULTS/tests_gpu.txt")
    grep -E "^(PASSED|FAILED|ERROR)|passed|failed|exit status|Error" "$RESULTS/tests_gpu.txt" | tail -12
    echo "tests ended at $(elapsed) s"
    bench . both_fill 25 d12_flash_mla
    bench /tmp/before before_fill 25 d12_flash_mla
    bench /tmp/tile tile_1 25 d12_flash_mla
    pack 2 ;;
3)  kernels_path
    bench . d12_fill 25 d12
    bench . both_1 25 d12_flash_mla
    bench /tmp/before before_1 25 d12_flash_mla
    bench . d12_1 25 d12
    bench /tmp/before before_2 25 d12_flash_mla
    bench /tmp/tile tile_2 25 d12_flash_mla
    bench . both_2 25 d12_flash_mla
    bench . d12_2 25 d12
    pack 3 ;;
4)  # not in PLAN.md: added after call 3, with the device time left (README.md says why); typed as
    # one line, LIMIT=280 bash -c '. tools/device_session.sh; kernels_path; FLAGS="..."; bench ...'
    kernels_path
    bench /tmp/tile tile_3 25 d12_flash_mla
    bench /tmp/before before_3 25 d12_flash_mla
    bench . both_3 25 d12_flash_mla
    bench . d12_3 25 d12
    pack 4 ;;
esac
