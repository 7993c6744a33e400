#!/usr/bin/env bash
# The device calls of PLAN.md beside this file, from the project root, each right after the one
# before on one machine (it stays up about 30 s after a call):
#     bash docs/prepared/2026-12-06-h100-add-layernorm/gpu_session.sh 1   # carry .gpu-kernels-a, .anchors
#     ... 2   # carry .gpu-kernels-b, .anchors, at once
#     ... 3, 4   # carry .anchors: the kernels, trees and caches of the calls before are still there
#     ... 6, 7   # a fresh machine (PLAN.md's addendum): carry .gpu-kernels-a, then -b at once
# Two arms of d12: "new" (the tree as carried) and "before" (/tmp/before: add_layer_norm.diff reversed).
set -u
HERE=docs/prepared/2026-12-06-h100-add-layernorm
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
. tools/device_session.sh
case "${1:-}" in
1)  # the first half of the kernels; the card at rest
    stage_kernels
    card_at_rest ;;
2)  # the kernels; the before tree; the GPU tests; a run of each tree that fills the caches
    install_kernels || exit 1
    rm -rf /tmp/before && cp -r . /tmp/before && patch -s -R -d /tmp/before -p1 < $HERE/add_layer_norm.diff || exit 1
    (timeout -s INT 240 python3 -m pytest -q -m gpu -rA -p no:warnings \
        "tests/test_hopper_kernels.py::test_quack_add_and_norm_matches_pytorchs" \
        "tests/test_hopper_kernels.py::test_fast_kernels_and_pytorch_give_the_same_model[d12]" \
        "tests/test_hopper_kernels.py::test_fast_kernels_and_pytorch_give_the_same_model[d12_post_norm_qk_norm]" \
        "tests/test_gpu.py::test_compiles_without_graph_breaks[d12]" > "$RESULTS/tests_gpu.txt" 2>&1
     echo "pytest exit status $?" >> "$RESULTS/tests_gpu.txt")
    grep -E "^(PASSED|FAILED|ERROR)|passed|failed|exit status|Error" "$RESULTS/tests_gpu.txt" | tail -20
    echo "tests ended at $(elapsed) s"
    bench . new_fill 25 d12
    bench /tmp/before before_fill 25 d12
    pack 2 ;;
3)  # three rounds, the second the other way round; in rounds 1 and 3, nanoGPT, then new, then before
    kernels_path
    bench . new_1 25 d12 --nanogpt .anchors/nanoGPT
    bench /tmp/before before_1 25 d12
    bench /tmp/before before_2 25 d12
    bench . new_2 25 d12
    bench . new_3 25 d12 --nanogpt .anchors/nanoGPT
    bench /tmp/before before_3 25 d12
    profile . new
    pack 3 ;;
4)  # the window and MLA on new, beside d12 new
    kernels_path
    bench . window_1 25 d12_sliding_window
    bench . mla_1 25 d12_flash_mla
    bench . new_4 25 d12
    bench . mla_2 25 d12_flash_mla
    bench . window_2 25 d12_sliding_window
    pack 4 ;;
6)  # a fresh machine: the first half of the kernels
    stage_kernels ;;
7)  # the kernels; 200 steps of d12 on the bundled data, two seeds, with the 2026-11-23 curves' flags
    install_kernels || exit 1
    for seed in 1337 1338; do
        if [ "$(left)" -lt 100 ]; then echo "curve $seed: skipped at $(elapsed) s"; continue; fi
        timeout $(( $(left) - 10 )) python3 train_gpt2_mod.py --model d12 --batch_size 32 --sequence_length 1024 --compile 1 \
            --kernels auto --seed $seed --num_iterations 200 --warmup_iters 20 --learning_rate 6e-4 \
            --learning_rate_decay_frac 0.1 --val_loss_every 25 --output_dir /tmp/curve_$seed > "$RESULTS/curve_$seed.log" 2>&1
        cp /tmp/curve_$seed/metrics.jsonl "$RESULTS/curve_d12_auto_$seed.jsonl"
        grep -h '"val_loss"' "$RESULTS/curve_d12_auto_$seed.jsonl" | tail -2; echo "curve $seed ended at $(elapsed) s"
    done
    pack 7 ;;
*)  echo "usage: gpu_session.sh 1|2|3|4|6|7" >&2; exit 2 ;;
esac
echo "call ${1} took $(elapsed) s"
