#!/usr/bin/env bash
# Train several named configs with the same seed, batch and steps (each through run.sh, into
# OUT/<config>), then compare them: OUT/compare.png (loss curves) and OUT/compare.md (table).
#   ./sweep.sh                                  # every d12 variant, the settings below, into runs/sweep
#   ./sweep.sh --out runs/mla --models "d12 d12_flash_mla" -- --num_iterations 1000
# Flags after -- go to every run (after the sweep's own, so they win).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

out=runs/sweep
models=$("$PYTHON" -c 'import train_gpt2_mod as m; print(" ".join(n for n in m.MODEL_CONFIGS if n.startswith("d12")))')
while (( $# )); do
  case $1 in
    --out) out=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "sweep.sh: unknown option $1 (flags for the trainer go after --)" >&2; exit 2 ;;
  esac
done

# the same for every config: enough steps on the bundled data for the val curves to separate
common=(--seed 1337 --num_iterations 300 --warmup_iters 30 --learning_rate 6e-4 --learning_rate_decay_frac 0.1
        --val_loss_every 25 --sample_every 0)
for model in $models; do
  echo "=== $model"
  ./run.sh --model "$model" "${common[@]}" --output_dir "$out/$model" "$@"
done
runs=()
for model in $models; do runs+=("$out/$model"); done
"$PYTHON" tools/compare_runs.py "${runs[@]}" --plot "$out/compare.png" --table "$out/compare.md" \
  --title "$(echo $models | wc -w) configs, same seed, batch and steps"
