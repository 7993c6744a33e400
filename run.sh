#!/usr/bin/env bash
# Launch train_gpt2_mod.py with torchrun, one process per visible GPU; with no GPU, a small
# demonstration model on the CPU. Flags pass through to the trainer (yours come last, so they
# win over the defaults below); --resume continues the latest checkpoint in --output_dir.
#   ./run.sh                        # GPUs: d12 on the bundled Shakespeare data; CPU: the demo
#   ./run.sh --model d24 --input_bin "data/fineweb10B/fineweb_train_*.bin" --input_val_bin "data/fineweb10B/fineweb_val_*.bin"
#   ./run.sh --resume
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

args=()
for arg in "$@"; do
  if [[ $arg == --resume ]]; then args+=(--resume_from latest); else args+=("$arg"); fi
done

ngpu=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')
if (( ngpu == 0 )); then
  echo "run.sh: no GPU found, so this is a small demonstration on the CPU: d12's layout shrunk to" \
       "4 layers, 4 heads, 128 wide, 128-token sequences, 250 steps. On GPUs the same command trains d12."
  defaults=(--model d12 --n_layer 4 --n_head 4 --n_embd 128 --sequence_length 128 --batch_size 8
            --num_iterations 250 --warmup_iters 20 --learning_rate 2e-3 --val_loss_every 50
            --val_tokens 16384 --sample_every 250)
  nproc=1
else
  defaults=(--model d12 --compile 1 --sample_every 250)
  nproc=$ngpu
fi
exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$nproc" train_gpt2_mod.py "${defaults[@]}" "${args[@]}"
