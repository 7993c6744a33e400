#!/usr/bin/env bash
# One device call (no Hopper kernels needed), from the project root with step_timing.diff applied and
# the committed trainer copied to .old/ (untracked; carry it):
#     mkdir -p .old && git show HEAD:train_gpt2_mod.py > .old/train_gpt2_mod.py && git apply docs/prepared/2026-12-01-gpu-step-timing/step_timing.diff
#     bash docs/prepared/2026-12-01-gpu-step-timing/gpu_session.sh        # carry .old
set -u
export PYTHONUNBUFFERED=1
rm -rf /tmp/old && mkdir /tmp/old && cp -r tools data tests train_gpt2_mod.py /tmp/old/ && cp .old/train_gpt2_mod.py /tmp/old/
echo "== the new test, on the patch (expect a pass) and on the committed trainer (expect a failure)"
timeout 150 python3 -m pytest -q -m gpu tests/test_gpu.py -k slow_to_launch -p no:cacheprovider 2>&1 | tail -3
(cd /tmp/old && timeout 150 python3 -m pytest -q -m gpu tests/test_gpu.py -k slow_to_launch -p no:cacheprovider 2>&1 | grep -E "assert|passed|failed" | tail -3)
echo "== 3-step runs: the 'steady state' line, committed then patched"
for t in /tmp/old .; do
  (cd $t && timeout 120 python3 train_gpt2_mod.py --model d12 --num_iterations 3 --input_val_bin "" --output_dir /tmp/three --overwrite 1 --batch_size 32 --sequence_length 1024 --compile 1 --kernels pytorch 2>&1 | grep -E "^step|steady")
done
echo "== 25-step medians, committed and patched in turn (they should agree within the spread)"
for round in 1 2; do
  timeout 90 python3 /tmp/old/tools/bench_train.py d12 --steps 25 -- --batch_size 32 --sequence_length 1024 --compile 1 --kernels pytorch | grep '^| d12'
  timeout 90 python3 tools/bench_train.py d12 --steps 25 -- --batch_size 32 --sequence_length 1024 --compile 1 --kernels pytorch | grep '^| d12'
done
