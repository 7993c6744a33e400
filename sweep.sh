#!/usr/bin/env bash
# Train several named configs with the same batch, steps and data, each with one or more init seeds
# (each run through run.sh, into OUT/<config>/seed<S>), then compare them: OUT/compare.png (mean
# curves with 95% bands), OUT/compare.md (table with intervals and a verdict against the first
# config) and OUT/compare.json.
#   ./sweep.sh                                  # every d12 variant, one seed, the settings below, into runs/sweep
#   ./sweep.sh --seeds 3                        # seeds 1337, 1338, 1339 for every config
#   ./sweep.sh --seeds "1 2 3" --out runs/mla --models "d12 d12_flash_mla" -- --num_iterations 1000
# Run it again to continue an interrupted sweep: finished runs are kept, an unfinished one resumes
# from its latest checkpoint. Flags after -- go to every run (after the sweep's own, so they win).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

out=runs/sweep
seeds=1
models=$("$PYTHON" -c 'import train_gpt2_mod as m; print(" ".join(n for n in m.MODEL_CONFIGS if n.startswith("d12")))')
while (( $# )); do
  case $1 in
    --out) out=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "sweep.sh: unknown option $1 (flags for the trainer go after --)" >&2; exit 2 ;;
  esac
done
# --seeds N: N seeds from 1337 on; a list: those seeds
if [[ $seeds =~ ^[0-9]+$ ]]; then
  (( seeds >= 1 )) || { echo "sweep.sh: --seeds must be at least 1" >&2; exit 2; }
  seeds=$(seq 1337 $(( 1336 + seeds )) | tr '\n' ' ')
fi

# the same for every config: enough steps on the bundled data for the val curves to separate; the
# data order is the same for every seed, so seeds vary only the initialization
common=(--num_iterations 300 --warmup_iters 30 --learning_rate 6e-4 --learning_rate_decay_frac 0.1
        --val_loss_every 25 --sample_every 0 --save_every 50 --keep_last 1)
runs=()
for model in $models; do for seed in $seeds; do runs+=("$model:$seed"); done; done
start=$(date +%s); trained=0
for i in "${!runs[@]}"; do
  IFS=: read -r model seed <<< "${runs[$i]}"
  dir=$out/$model/seed$seed
  eta=""
  if (( trained > 0 )); then
    per_run=$(( ($(date +%s) - start) / trained ))
    eta=", about $(( per_run * (${#runs[@]} - i) / 60 )) min left"
  fi
  if [[ -f $dir/run.json ]]; then
    echo "sweep.sh [$(( i + 1 ))/${#runs[@]}] $model seed $seed: finished before, kept"
    continue
  fi
  resume=()
  if compgen -G "$dir/ckpt_*.pt" > /dev/null; then resume=(--resume_from latest); what="resuming"
  elif [[ -d $dir ]]; then resume=(--overwrite 1); what="starting over (no checkpoint)"
  else what="starting"; fi
  echo "sweep.sh [$(( i + 1 ))/${#runs[@]}] $model seed $seed: $what$eta"
  ./run.sh --model "$model" --seed "$seed" "${common[@]}" --output_dir "$dir" "${resume[@]}" "$@"
  trained=$(( trained + 1 ))
done
dirs=()
for r in "${runs[@]}"; do IFS=: read -r model seed <<< "$r"; dirs+=("$out/$model/seed$seed"); done
first=${models%% *}
"$PYTHON" tools/compare_runs.py "${dirs[@]}" --baseline "$first" --plot "$out/compare.png" --table "$out/compare.md" \
  --json "$out/compare.json" --title "$(echo $models | wc -w) configs x $(echo $seeds | wc -w) seeds, same batch, steps and data"
