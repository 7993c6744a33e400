#!/usr/bin/env bash
# The device calls of README.md beside this file (four, and a fifth where call 3 meets its rule), from the project root, one after another on
# one machine (it stays up about 30 s after a call):
#     bash ../shared/gpu-kernels/stage.sh && bash docs/prepared/2026-12-02-host-bound-step/stage.sh
#     bash docs/prepared/2026-12-02-host-bound-step/gpu_session.sh 1   # carry .gpu-kernels-a and .gpu-tools
#     ... 2   # carry .gpu-kernels-b, at once
#     ... 3   # at once again: the kernels and the caches from 2 are still there
#     ... 4   # at once again
#     ... 5   # only if call 3 met the rule for CUDA graphs (README.md)
set -u
export PYTHONUNBUFFERED=1
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1"
LIMIT=570  # each call's own budget in seconds, under the device's 600
t0=$(date +%s)
elapsed() { echo $(( $(date +%s) - t0 )); }
left() { echo $(( LIMIT - $(elapsed) )); }
bench() {  # bench NAME CONFIG [env...]: one 25-step run, its row, its record in $OUT (TRAINER_DIR: another copy)
    local name=$1 model=$2; shift 2
    env "$@" timeout 120 python3 "${TRAINER_DIR:-.}/tools/bench_train.py" "$model" --steps 25 --json "$OUT/$name.json" -- $FLAGS | grep '^| d12'
}
profile() {  # profile NAME CONFIG [env...]: tools/profile_train.py, its host lines and idle summary
    local name=$1 model=$2; shift 2
    env "$@" timeout 200 python3 tools/profile_train.py --warmup 10 --timed 20 --steps 3 -- --model "$model" $FLAGS "${KERNELS[@]}" > "$OUT/$name.txt" 2>&1
    grep -E "^first step|ms/step \(mean|^host|^profiled|^GPU idle|skipping cudagraphs" "$OUT/$name.txt"
}
spy() {  # spy NAME CONFIG [trainer flags]: py-spy on the trainer's host threads for 5 s of steady steps
    local name=$1 model=$2; shift 2
    python3 train_gpt2_mod.py --model "$model" $FLAGS --num_iterations 400 --warmup_iters 0 --input_val_bin "" \
        --output_dir "/tmp/spy_$name" --overwrite 1 "$@" > "$OUT/${name}_trainer.txt" 2>&1 &
    local pid=$! waited=0
    until grep -q "^step   150/" "$OUT/${name}_trainer.txt" || [ $waited -ge 150 ]; do sleep 1; waited=$((waited + 1)); done
    /tmp/pyspy/bin/py-spy record --pid $pid --duration 5 --rate 500 --native --threads --idle --format raw --output "$OUT/$name.raw" > "$OUT/${name}_pyspy.txt" 2>&1 \
        || tail -3 "$OUT/${name}_pyspy.txt"
    wait $pid; grep -E "steady state" "$OUT/${name}_trainer.txt"; echo "$name spied at $(elapsed) s"
}
KERNELS=()
case "${1:-}" in
1)  # PyTorch's kernels: the new profile test, its host lines, and py-spy on the host
    mkdir -p /tmp/gk && cp .gpu-kernels-a/* /tmp/gk/
    pip install -q --no-index --no-deps --target /tmp/pyspy .gpu-tools/py_spy-*.whl || echo "py-spy did not install"
    timeout 150 python3 -m pytest -q -m gpu tests/test_gpu.py -k profile_reports -p no:cacheprovider 2>&1 | tail -2
    KERNELS=(--kernels pytorch); profile profile_d12_pytorch d12
    spy spy_d12_pytorch d12 --kernels pytorch
    ;;
2)  # the Hopper kernels; the caches filled; the host under auto; CUDA graphs' first run, with inductor's skip messages
    cp .gpu-kernels-b/* /tmp/gk/ && bash /tmp/gk/install.sh || exit 1
    export PYTHONPATH=/tmp/gk/site-packages:/tmp/gk/site-packages/nvidia_cutlass_dsl/dsl_packages
    timeout 250 python3 tools/bench_train.py d12 --steps 20 -- $FLAGS | grep '^| d12'   # fills the JIT caches
    echo "caches filled at $(elapsed) s"
    profile profile_d12_auto d12
    spy spy_d12_auto d12
    [ "$(left)" -gt 120 ] && TORCHINDUCTOR_CUDAGRAPHS=1 timeout "$(( $(left) - 10 ))" python3 train_gpt2_mod.py --model d12 $FLAGS \
        --num_iterations 30 --warmup_iters 0 --input_val_bin "" --output_dir /tmp/cg_first --overwrite 1 > "$OUT/cudagraphs_first.txt" 2>&1
    grep -E -m 8 "skipping cudagraphs|cudagraph|first step|steady state|Error" "$OUT/cudagraphs_first.txt"
    ;;
3)  # three rounds of d12 with and without CUDA graphs, in turn; then the profile under CUDA graphs
    export PYTHONPATH=/tmp/gk/site-packages:/tmp/gk/site-packages/nvidia_cutlass_dsl/dsl_packages
    for round in 1 2 3; do
      [ "$(left)" -gt 110 ] && bench "d12_$round" d12
      [ "$(left)" -gt 110 ] && bench "d12_cudagraphs_$round" d12 TORCHINDUCTOR_CUDAGRAPHS=1
    done
    echo "rounds done at $(elapsed) s"
    [ "$(left)" -gt 90 ] && profile profile_d12_cudagraphs d12 TORCHINDUCTOR_CUDAGRAPHS=1
    ;;
4)  # fa4_dispatch.diff: its FA4 GPU tests, two rounds of d12 against 1.8.3; then MLA with and without CUDA graphs
    export PYTHONPATH=/tmp/gk/site-packages:/tmp/gk/site-packages/nvidia_cutlass_dsl/dsl_packages
    rm -rf /tmp/fa4d && mkdir /tmp/fa4d && cp -r train_gpt2_mod.py data tools tests /tmp/fa4d/
    patch -s -d /tmp/fa4d -p1 < docs/prepared/2026-12-02-host-bound-step/fa4_dispatch.diff || exit 1
    (cd /tmp/fa4d && timeout 170 python3 -m pytest -q -m gpu tests/test_hopper_kernels.py -k "flash_attn4 or packed" -p no:cacheprovider 2>&1 | tail -3) | tee "$OUT/test_fa4_dispatch.txt"
    for round in 1 2; do
      [ "$(left)" -gt 110 ] && bench "d12_dispatch_base_$round" d12
      [ "$(left)" -gt 110 ] && TRAINER_DIR=/tmp/fa4d bench "d12_dispatch_$round" d12
    done
    echo "dispatch rounds done at $(elapsed) s"
    if [ "$(left)" -gt 300 ]; then
      timeout 250 python3 tools/bench_train.py d12_flash_mla --steps 20 -- $FLAGS | grep '^| d12'   # fills MLA's JIT caches
      [ "$(left)" -gt 110 ] && bench mla_1 d12_flash_mla
      [ "$(left)" -gt 110 ] && bench mla_cudagraphs_1 d12_flash_mla TORCHINDUCTOR_CUDAGRAPHS=1
    fi
    ;;
5)  # only where call 3 met the rule of README.md: cuda_graphs.diff's GPU test, in a patched copy
    export PYTHONPATH=/tmp/gk/site-packages:/tmp/gk/site-packages/nvidia_cutlass_dsl/dsl_packages
    rm -rf /tmp/cg && mkdir /tmp/cg && cp -r train_gpt2_mod.py data tools tests README.md /tmp/cg/
    patch -s -d /tmp/cg -p1 < docs/prepared/2026-12-02-host-bound-step/cuda_graphs.diff || exit 1
    (cd /tmp/cg && timeout 500 python3 -m pytest -q -m gpu tests/test_gpu.py -k cuda_graphs -p no:cacheprovider 2>&1 | tail -3) | tee "$OUT/test_cuda_graphs.txt"
    ;;
*)  echo "usage: gpu_session.sh 1|2|3|4|5" >&2; exit 2 ;;
esac
echo "stage ${1} took $(elapsed) s"
