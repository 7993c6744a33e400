#!/usr/bin/env bash
# The device calls of PLAN.md beside this file, from the project root, each right after the one
# before on one machine (it stays up about 30 s after a call):
#     bash docs/prepared/2026-12-06-h100-mla-tile-profile/gpu_session.sh 1   # carry .gpu-kernels-a
#     ... 2   # carry .gpu-kernels-b, at once
#     ... 3   # carry nothing more
#     ... 4   # carry nothing more
# Trees: the tree as carried (the tile), /tmp/base (tile.diff reversed: 1.16.0's trainer).
set -u
HERE=docs/prepared/2026-12-06-h100-mla-tile-profile
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
. tools/device_session.sh

pairs() {  # pairs NAME ROUNDS: d12 and MLA in turn, every second round reversed, within this call's budget
    (timeout $(( $(left) - 5 )) python3 tools/bench_train.py d12 d12_flash_mla --steps 25 --repeat "$2" --json "$RESULTS/$1.json" -- $FLAGS | grep -E '^\| ')
    echo "$1 ended at $(elapsed) s"
}

case "${1:-}" in
1)  stage_kernels
    card_at_rest ;;
2)  install_kernels || exit 1
    rm -rf /tmp/base && cp -r . /tmp/base && patch -s -R -d /tmp/base -p1 < $HERE/tile.diff || exit 1
    T=tests/test_hopper_kernels.py
    (timeout -s INT 240 python3 -m pytest -q -m gpu -rA -p no:warnings --durations 0 \
        "$T::test_flash_attn4_matches_fp32_attention[96-64-0]" \
        "$T::test_mlas_rope_in_quacks_projections_matches_pytorchs_projections[False]" \
        "$T::test_rope_in_quacks_projection_matches_pytorchs_projection[0-False]" \
        "$T::test_fast_kernels_and_pytorch_give_the_same_model[d12_flash_mla]" \
        "$T::test_fast_kernels_and_pytorch_give_the_same_model[d12]" \
        "$T::test_mlas_rope_in_quacks_projections_matches_pytorchs_projections[True]" \
        "$T::test_rope_in_quacks_projection_matches_pytorchs_projection[0-True]" \
        "$T::test_flash_attn4_compiles_into_the_model_graph[d12_flash_mla]" > "$RESULTS/tests_gpu.txt" 2>&1
     echo "pytest exit status $?" >> "$RESULTS/tests_gpu.txt")
    grep -E "^(PASSED|FAILED|ERROR)|passed|failed|exit status" "$RESULTS/tests_gpu.txt" | tail -12
    echo "tests ended at $(elapsed) s"
    profile . mla_tile d12_flash_mla
    profile /tmp/base mla_base d12_flash_mla
    pack 2 ;;
3)  kernels_path
    bench . fill_d12 25 d12
    pairs pairs_3 5
    pack 3 ;;
4)  kernels_path
    pairs pairs_4 5
    pack 4 ;;
esac
