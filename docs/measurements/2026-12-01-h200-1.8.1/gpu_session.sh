#!/usr/bin/env bash
# Calls 1-3 of README.md beside this file, as they ran, from the project root of de251ae with
# prototype.diff applied and the committed trainer copied to .old/ (untracked: it travels with the working tree):
#     mkdir -p .old && git show HEAD:train_gpt2_mod.py > .old/train_gpt2_mod.py && git apply docs/measurements/2026-12-01-h200-1.8.1/prototype.diff
#     bash docs/measurements/2026-12-01-h200-1.8.1/gpu_session.sh 1   # carry .gpu-kernels-a
#     ... 2   # carry .gpu-kernels-b, at once (the machine stays up about 30 s)
#     ... 3   # carry .old
# Each stage writes what matters under $OUT and ends inside the 600 s a call may take.
set -u
export PYTHONUNBUFFERED=1
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1"
t0=$(date +%s)
elapsed() { echo $(( $(date +%s) - t0 )); }

warm() { # config, --cuda_graphs value: 3 untimed steps that fill the JIT, tuning and compile caches
  python3 train_gpt2_mod.py --model "$1" --num_iterations 3 --warmup_iters 0 --input_val_bin "" --output_dir "/tmp/warm_$1_$2" --overwrite 1 $FLAGS --cuda_graphs "$2" > "/tmp/warm_$1_$2.log" 2>&1
  echo "warm $1 cuda_graphs=$2: exit $?, $(grep -E 'MLP on|steady' "/tmp/warm_$1_$2.log" | tr '\n' ' ')"
}

case "${1:-}" in
1)  # the first half of the kernels; CUDA graphs against none on the PyTorch path (no kernels yet)
    mkdir -p /tmp/gk && cp .gpu-kernels-a/* /tmp/gk/
    nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv
    timeout 330 python3 -m pytest -q -m gpu tests/test_gpu.py -k cuda_graphs -p no:cacheprovider 2>&1 | tail -30 | tee "$OUT/stage1_pytest.log"
    ;;
2)  # install; the MLP kernels alone; warm every config (d12 alone first, so that quack tunes its GEMMs
    # on an idle GPU); the Hopper tests and the graph-break tests
    cp .gpu-kernels-b/* /tmp/gk/ && bash /tmp/gk/install.sh || exit 1
    export PYTHONPATH=/tmp/gk/site-packages:/tmp/gk/site-packages/nvidia_cutlass_dsl/dsl_packages
    timeout 200 python3 tools/bench_mlp.py 2>&1 | tee "$OUT/bench_mlp.md"
    warm d12 0
    echo "d12 warm at $(elapsed) s"
    warm d12 1 & warm d12_flash_mla 0 & warm d12_flash_mla 1 & warm d12_sliding_window 0 & warm d12_sliding_window 1 & wait
    echo "all warm at $(elapsed) s"
    timeout $(( 570 - $(elapsed) )) python3 -m pytest -q -m gpu tests/test_hopper_kernels.py tests/test_gpu.py::test_compiles_without_graph_breaks -p no:cacheprovider 2>&1 | tail -30 | tee "$OUT/stage2_pytest.log"
    ;;
3)  # whole steps, in turn: the committed trainer (.old/), then the prototype without and with CUDA graphs
    export PYTHONPATH=/tmp/gk/site-packages:/tmp/gk/site-packages/nvidia_cutlass_dsl/dsl_packages
    rm -rf /tmp/old && mkdir /tmp/old && cp -r tools data train_gpt2_mod.py /tmp/old/ && cp .old/train_gpt2_mod.py /tmp/old/
    for round in 1 2; do
      timeout 100 python3 /tmp/old/tools/bench_train.py d12 --steps 25 --json "$OUT/committed_$round.json" -- $FLAGS | grep '^| d12'
      timeout $(( 575 - $(elapsed) )) python3 tools/bench_train.py d12 d12_flash_mla d12_sliding_window --variant "" --variant "--cuda_graphs 1" --steps 25 --json "$OUT/prototype_$round.json" -- $FLAGS | grep '^| d12'
      echo "round $round at $(elapsed) s"
    done
    ;;
*)  echo "usage: gpu_session.sh 1|2|3" >&2; exit 2 ;;
esac
echo "stage ${1} took $(elapsed) s"
