#!/usr/bin/env bash
# Launch train_gpt2_mod.py, one process per visible GPU (torchrun for several); with no GPU, a small
# demonstration model on the CPU. Flags pass through to the trainer (yours come last, so they
# win over the defaults below); --resume continues the latest checkpoint in --output_dir.
#   ./run.sh                        # GPUs: d12 on the bundled Shakespeare data; CPU: the demo
#   ./run.sh --model d24 --input_bin "data/fineweb10B/fineweb_train_*.bin" --input_val_bin "data/fineweb10B/fineweb_val_*.bin"
#   ./run.sh --resume
#   NPROC=2 ./run.sh                # another number of processes (on a CPU: gloo ranks)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

args=()
for arg in "$@"; do
  if [[ $arg == --resume ]]; then args+=(--resume_from latest); else args+=("$arg"); fi
done

ngpu=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')
if (( ngpu == 0 )); then
  echo "run.sh: no GPU found, so this is the small demonstration on the CPU (by default d12's layout" \
       "shrunk to 4 layers, 4 heads, 128 wide, 128-token sequences, 250 steps; your flags override these)."
  defaults=(--model d12 --n_layer 4 --n_head 4 --n_embd 128 --sequence_length 128 --batch_size 8
            --num_iterations 250 --warmup_iters 20 --learning_rate 2e-3 --val_loss_every 50
            --val_tokens 16384 --sample_every 250)
else
  defaults=(--model d12 --compile 1 --sample_every 250)
fi
nproc=${NPROC:-$(( ngpu > 0 ? ngpu : 1 ))}
if (( nproc == 1 )); then  # one process needs no torchrun, and its errors stay one line
  exec "$PYTHON" train_gpt2_mod.py "${defaults[@]}" "${args[@]}"
fi

# Several processes: torchrun follows a failed worker with its own report; repeat the trainer's
# one-line error (or interrupt notice) last, and keep the trainer's exit code.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
{ "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$nproc" train_gpt2_mod.py "${defaults[@]}" "${args[@]}" \
    2>&1 1>&3 3>&- | tee "$log" >&2; } 3>&1
status=${PIPESTATUS[0]}
set -e
if (( status != 0 )); then
  line=$( (grep -E '^(error|interrupted)' "$log" | grep -v 'on another rank'; grep -E '^error' "$log") | head -n 1 || true)
  if [[ -n $line ]]; then
    echo "$line" >&2
    [[ $line == interrupted* ]] && exit 130
    [[ $line == *"; to go on, resume"* || $line == *"no checkpoint was saved"* ]] && exit 1
    exit 2
  fi
fi
exit "$status"
