#!/usr/bin/env bash
# Calls 3 and 4 as run, from the project root, on the machine of calls 1 and 2 (the kernels
# installed in /tmp/gk, the caches filled). They replaced gpu_session.sh's call 3, which did not run:
# call 2's one CUDA-graph run (574,960 tokens/s) made a comparison in turn, with the clocks read,
# the better use of the device time left.
export PYTHONPATH=/tmp/gk/site-packages:/tmp/gk/site-packages/nvidia_cutlass_dsl/dsl_packages
case "${1:-}" in
3)  # d12 under auto and under inductor's CUDA graphs, in turn, three rounds, dmon running
    F="--batch_size 32 --sequence_length 1024 --compile 1"; t0=$(date +%s)
    nvidia-smi dmon -s pc -d 1 -o T > $OUT/dmon_call3.txt 2>&1 &
    for r in 1 2 3; do
      timeout 100 python3 tools/bench_train.py d12 --steps 25 --json $OUT/auto_$r.json -- $F | grep '^| d12'
      TORCHINDUCTOR_CUDAGRAPHS=1 timeout 100 python3 tools/bench_train.py d12 --steps 25 --json $OUT/cg_$r.json -- $F | grep '^| d12'
      echo "round $r at $(( $(date +%s) - t0 )) s"; [ $(( $(date +%s) - t0 )) -gt 400 ] && break
    done
    kill %1 ;;
4)  # cuda_graphs.diff (docs/measurements/2026-12-02-h200-host-bound-step/) applied: its GPU test,
    # then 200 steps of nanoGPT and of d12 --cuda_graphs 1 in turn, dmon running
    git apply docs/measurements/2026-12-02-h200-host-bound-step/cuda_graphs.diff && grep -o -- "--cuda_graphs[^\"]*" train_gpt2_mod.py | head -2
    timeout 260 python3 -m pytest -q -m gpu tests/test_gpu.py -k cuda_graphs 2>&1 | tail -5 > $OUT/test_cuda_graphs.txt; cat $OUT/test_cuda_graphs.txt
    nvidia-smi dmon -s pc -d 1 -o T > $OUT/dmon_call4.txt 2>&1 &
    timeout 200 python3 tools/bench_train.py d12 --nanogpt .anchors/nanoGPT --steps 200 --variant "--cuda_graphs 1" --json $OUT/sustained_cg.json -- --batch_size 32 --sequence_length 1024 --compile 1 | tail -8
    kill %1 ;;
esac
