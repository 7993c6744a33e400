#!/usr/bin/env bash
# The two device calls of PLAN.md beside this file, from the project root, the second right after
# the first on one machine (it stays up about 30 s after a call):
#     bash docs/measurements/2026-12-06-h100-mlp-input-cast/gpu_session.sh 1   # carry .gpu-kernels-a
#     LIMIT=<s> bash docs/measurements/2026-12-06-h100-mlp-input-cast/gpu_session.sh 2   # carry .gpu-kernels-b
# The working tree is the trainer as it is ("before", 1.11.0); /tmp/new is it with the diff applied.
set -u
DIFF=docs/measurements/2026-12-06-h100-mlp-input-cast/mlp_input_cast.diff
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
. tools/device_session.sh
case "${1:-}" in
1)  stage_kernels
    nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv ;;
2)  # Inductor's code for before's d12 step (which kernels the two 768-wide casts are), compiling the
    # CuTe kernels for the runs after it; then before and new in turn, as long as time is left
    install_kernels || exit 1
    rm -rf /tmp/new && cp -r . /tmp/new && patch -s -d /tmp/new -p1 < "$DIFF" || exit 1
    TORCH_LOGS=output_code timeout $(( $(left) - 200 )) python3 train_gpt2_mod.py --model d12 --num_iterations 2 \
        --warmup_iters 0 --input_val_bin "" --output_dir /tmp/oc --overwrite 1 $FLAGS > "$RESULTS/output_code.txt" 2>&1
    echo "output code: exit $?, $(wc -c < "$RESULTS/output_code.txt") bytes, at $(elapsed) s"
    bench /tmp/new new_1 25 d12
    bench . before_1 25 d12
    bench . before_2 25 d12
    bench /tmp/new new_2 25 d12
    pack 2 ;;
*)  echo "usage: gpu_session.sh 1|2" >&2; exit 2 ;;
esac
echo "call ${1} took $(elapsed) s"
