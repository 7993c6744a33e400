#!/usr/bin/env bash
# The first three device calls of README.md beside this file, as run, from the project root with step_timing.diff
# applied and the committed trainer copied to .old/ (untracked; it travels when carried):
#     bash ../shared/gpu-kernels/stage.sh
#     mkdir -p .old && git show HEAD:train_gpt2_mod.py > .old/train_gpt2_mod.py && git apply docs/prepared/2026-12-01-step-timing-and-mlp-choice/step_timing.diff
#     bash docs/prepared/2026-12-01-step-timing-and-mlp-choice/gpu_session.sh 1   # carry .old and .gpu-kernels-a
#     ... 2   # carry .gpu-kernels-b, at once (the machine stays up about 30 s)
#     ... 3   # at once again: the kernels and the caches from 2 are still there
set -u
export PYTHONUNBUFFERED=1
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1"
t0=$(date +%s)
elapsed() { echo $(( $(date +%s) - t0 )); }

case "${1:-}" in
1)  # step timing, on PyTorch's kernels (the Hopper kernels are not installed yet)
    mkdir -p /tmp/gk && cp .gpu-kernels-a/* /tmp/gk/
    rm -rf /tmp/old && mkdir /tmp/old && cp -r tools data tests train_gpt2_mod.py /tmp/old/ && cp .old/train_gpt2_mod.py /tmp/old/
    echo "== the new test, patched (expect a pass), then on the committed trainer (expect a failure)"
    timeout 150 python3 -m pytest -q -m gpu tests/test_gpu.py -k slow_to_launch -p no:cacheprovider 2>&1 | tail -3
    (cd /tmp/old && timeout 150 python3 -m pytest -q -m gpu tests/test_gpu.py -k slow_to_launch -p no:cacheprovider 2>&1 | grep -E "assert|passed|failed" | tail -3)
    echo "== 3-step runs, committed then patched: their 'steady state' lines"
    for dir in /tmp/old .; do
      (cd $dir && timeout 120 python3 train_gpt2_mod.py --model d12 --num_iterations 3 --input_val_bin "" --output_dir /tmp/three --overwrite 1 $FLAGS --kernels pytorch 2>&1 | grep -E "^step|steady")
    done
    echo "== 25-step medians, committed and patched in turn"
    for round in 1 2; do
      timeout 90 python3 /tmp/old/tools/bench_train.py d12 --steps 25 --json "$OUT/timing_committed_$round.json" -- $FLAGS --kernels pytorch | grep '^| d12'
      timeout 90 python3 tools/bench_train.py d12 --steps 25 --json "$OUT/timing_patched_$round.json" -- $FLAGS --kernels pytorch | grep '^| d12'
    done
    ;;
2)  # the MLP under --kernels auto: quack's (committed) against PyTorch's, in whole steps; then a profile
    cp .gpu-kernels-b/* /tmp/gk/ && bash /tmp/gk/install.sh || exit 1
    export PYTHONPATH=/tmp/gk/site-packages:/tmp/gk/site-packages/nvidia_cutlass_dsl/dsl_packages
    rm -rf /tmp/mlpt && cp -r /tmp/old /tmp/mlpt
    sed -i 's/"auto": {"mlp": (QuackMLP, TorchMLP),/"auto": {"mlp": (TorchMLP,),/' /tmp/mlpt/train_gpt2_mod.py
    grep -n '^    "auto"' /tmp/mlpt/train_gpt2_mod.py
    timeout 250 python3 /tmp/old/tools/bench_train.py d12 --steps 20 -- $FLAGS | grep "^| d12"   # fills the JIT caches
    echo "caches filled at $(elapsed) s"
    for round in 1 2; do
      timeout 90 python3 /tmp/old/tools/bench_train.py d12 --steps 25 --json "$OUT/mlp_quack_$round.json" -- $FLAGS | grep '^| d12'
      timeout 90 python3 /tmp/mlpt/tools/bench_train.py d12 --steps 25 --json "$OUT/mlp_pytorch_$round.json" -- $FLAGS | grep '^| d12'
    done
    echo "benches done at $(elapsed) s"
    left=$(( 580 - $(elapsed) )); [ "$left" -gt 60 ] && timeout "$left" python3 /tmp/old/tools/profile_train.py --warmup 10 --timed 20 --steps 3 -- --model d12 $FLAGS > "$OUT/profile_d12_h200.txt" 2>&1
    tail -40 "$OUT/profile_d12_h200.txt"
    ;;
3)  # at once after 2, on the same machine: inductor's coordinate-descent tuning of its Triton kernels
    export PYTHONPATH=/tmp/gk/site-packages:/tmp/gk/site-packages/nvidia_cutlass_dsl/dsl_packages
    python3 -c "import quack.mlp, flash_attn.cute" || exit 1
    cdt() { TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 "$@"; }
    echo "== d12, auto, tuned: the first run tunes (its first step says how long)"
    cdt timeout 300 python3 /tmp/old/tools/bench_train.py d12 --steps 25 --json "$OUT/cdt_first.json" -- $FLAGS | grep '^| d12'
    echo "tuned at $(elapsed) s"
    for round in 1 2; do
      timeout 90 python3 /tmp/old/tools/bench_train.py d12 --steps 25 --json "$OUT/cdt_off_$round.json" -- $FLAGS | grep '^| d12'
      cdt timeout 90 python3 /tmp/old/tools/bench_train.py d12 --steps 25 --json "$OUT/cdt_on_$round.json" -- $FLAGS | grep '^| d12'
    done
    echo "d12 done at $(elapsed) s"
    left=$(( 580 - $(elapsed) ))
    if [ "$left" -gt 200 ]; then
      timeout 90 python3 /tmp/old/tools/bench_train.py d12_flash_mla --steps 25 --json "$OUT/cdt_off_mla.json" -- $FLAGS | grep '^| d12'
      cdt timeout $(( 580 - $(elapsed) )) python3 /tmp/old/tools/bench_train.py d12_flash_mla --steps 25 --json "$OUT/cdt_on_mla.json" -- $FLAGS | grep '^| d12'
    fi
    ;;
*)  echo "usage: gpu_session.sh 1|2|3" >&2; exit 2 ;;
esac
echo "stage ${1} took $(elapsed) s"
