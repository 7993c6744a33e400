#!/usr/bin/env bash
# Is the host ahead of the GPU? A copy of the trainer with host_lead.diff applied prints, per step,
# how long the host took to launch it and how long it then waited for the step before. Two calls on
# one machine, from the project root: 1 (carry .gpu-kernels-a), then 2 at once (carry .gpu-kernels-b).
set -u
export PYTHONUNBUFFERED=1
t0=$(date +%s)
lead() {  # lead NAME MODEL STEPS [flags]: one run of the probed copy, its last lines
    local name=$1 model=$2 steps=$3; shift 3
    timeout 200 python3 /tmp/lead/train_gpt2_mod.py --model "$model" --batch_size 32 --sequence_length 1024 --compile 1 \
        --num_iterations "$steps" --warmup_iters 0 --input_val_bin "" --output_dir "/tmp/lead/$name" --overwrite 1 "$@" > "$OUT/$name.txt" 2>&1
    grep -E "first step|steady state|^host" "$OUT/$name.txt"; echo "$name done at $(( $(date +%s) - t0 )) s"
}
rm -rf /tmp/lead && mkdir /tmp/lead && cp -r train_gpt2_mod.py data /tmp/lead/
patch -s -d /tmp/lead -p0 < docs/measurements/2026-12-01-h200-gaps-loss-chunks-host-lead/host_lead.diff || exit 1
case "${1:-}" in
1)  mkdir -p /tmp/gk && cp .gpu-kernels-a/* /tmp/gk/
    lead pytorch d12 30 --kernels pytorch ;;
2)  cp .gpu-kernels-b/* /tmp/gk/ && bash /tmp/gk/install.sh || exit 1
    export PYTHONPATH=/tmp/gk/site-packages:/tmp/gk/site-packages/nvidia_cutlass_dsl/dsl_packages
    lead auto_cold d12 30
    lead auto_warm d12 40
    [ $(( 300 - $(date +%s) + t0 )) -gt 110 ] && lead mla_cold d12_flash_mla 30 ;;
esac
