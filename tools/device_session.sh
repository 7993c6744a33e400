# Helpers for the scripts that run a measurement session on a lent GPU machine in calls of at most
# 600 s each (docs/prepared/*/gpu_session.sh, which move to docs/measurements/ once run; the scripts
# there from before 2026-12-07 carry their own copies, kept as they ran). Source it from
# the project root, after setting FLAGS (the trainer's flags for every run). Each call keeps its own
# budget, LIMIT seconds, and every step checks what is left before it starts, so that a call ends
# with its results packed rather than cut off by the machine's limit.
#
#     FLAGS="--batch_size 32 --sequence_length 1024 --compile 1"; . tools/device_session.sh
#     install_kernels; bench . before_1 25 d12 --nanogpt .anchors/nanoGPT; pack 2
#     pairs pairs_3 25 5 d12 d12_flash_mla; pack 3

export PYTHONUNBUFFERED=1
# this call's budget in seconds, under the device's 600; copied, because bash drops an assignment
# written before `.` (LIMIT=300 . tools/device_session.sh) once the file is read
_session_limit=${LIMIT:-570}
RESULTS=/tmp/res  # where every step writes; pack sends it back under $OUT
_session_t0=$(date +%s)
mkdir -p "$RESULTS"

elapsed() { echo $(( $(date +%s) - _session_t0 )); }
left() { echo $(( _session_limit - $(elapsed) )); }

# FlashAttention-4 and quack, as ../shared/gpu-kernels/stage.sh splits them over two calls:
# stage_kernels in the first (carrying .gpu-kernels-a), install_kernels in the second (-b).
stage_kernels() { mkdir -p /tmp/gk && cp .gpu-kernels-a/* /tmp/gk/; }
card_at_rest() {  # the GPU's clocks, power and temperature before any run, and what card it is
    nvidia-smi -q -d PERFORMANCE,POWER,CLOCK,TEMPERATURE > "$OUT/smi_idle.txt" 2>&1
    nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv
}
kernels_path() { export PYTHONPATH=/tmp/gk/site-packages:/tmp/gk/site-packages/nvidia_cutlass_dsl/dsl_packages; }
install_kernels() {
    cp .gpu-kernels-b/* /tmp/gk/ && bash /tmp/gk/install.sh > /tmp/install.txt 2>&1 || { tail -5 /tmp/install.txt; return 1; }
    kernels_path
}

# A tree made of the trainer and tools alone (`git archive REV train_gpt2_mod.py tools`) has no
# data/, and the trainer looks for its shards beside itself: link in the project's.
with_data() { [ -e "$1/data" ] || ln -s "$PWD/data" "$1/data"; }

bench() {  # bench DIR NAME STEPS BENCH_ARGS...: one tools/bench_train.py run from the tree in DIR, if time is left
    local dir=$1 name=$2 steps=$3; shift 3
    local budget=$(( $(left) - 5 ))
    if [ "$budget" -lt 60 ]; then echo "$name: skipped at $(elapsed) s"; return; fi
    with_data "$dir"
    (cd "$dir" && timeout "$budget" python3 tools/bench_train.py "$@" --steps "$steps" --json "$RESULTS/$name.json" -- $FLAGS | grep -E '^\| (d12|nanoGPT)')
    echo "$name ended at $(elapsed) s"
}

profile() {  # profile DIR NAME [CONFIG]: a step by kernel (tools/profile_train.py, TOP kernels listed, 60 unless set; NAME_WIDTH characters of their names, 90 unless set) from the tree in DIR, if time is left
    local budget=$(( $(left) - 5 ))
    if [ "$budget" -lt 60 ]; then echo "$2: skipped at $(elapsed) s"; return; fi
    with_data "$1"
    (cd "$1" && timeout "$budget" python3 tools/profile_train.py --warmup 10 --timed 20 --steps 3 --top "${TOP:-60}" --name_width "${NAME_WIDTH:-90}" -- --model "${3:-d12}" $FLAGS > "$RESULTS/profile_$2.txt" 2>&1)
    grep -E "first step|ms/step|^\| [a-zA-Z(]" "$RESULTS/profile_$2.txt" | head -12; echo "$2 ended at $(elapsed) s"
}

inductor_log() {  # inductor_log DIR NAME LOGS: Inductor's TORCH_LOGS (output_code, fusion) of one d12 compilation from the tree in DIR, if time is left
    if [ "$(left)" -lt 90 ]; then echo "$3 log of $2: skipped at $(elapsed) s"; return; fi
    with_data "$1"
    # caches off: on a cache hit Inductor compiles nothing, so it logs nothing
    (cd "$1" && TORCHINDUCTOR_FORCE_DISABLE_CACHES=1 TORCH_LOGS="$3" timeout $(( $(left) > 200 ? 150 : $(left) - 10 )) \
        python3 train_gpt2_mod.py --model d12 --num_iterations 2 --warmup_iters 0 --input_val_bin "" \
        --output_dir /tmp/oc --overwrite 1 $FLAGS > "$RESULTS/${3}_$2.txt" 2>&1)
    gzip -9 "$RESULTS/${3}_$2.txt"; echo "$3 log of $2 ended at $(elapsed) s"
}

pairs() {  # pairs NAME STEPS ROUNDS A B [BENCH_ARGS...]: configs A and B (under each --trainer in BENCH_ARGS) in paired rounds, every second one reversed (tools/bench_train.py --repeat), until the call's budget ends
    local name=$1 steps=$2 rounds=$3 a=$4 b=$5; shift 5
    local budget=$(( $(left) - 5 ))
    if [ "$budget" -lt 120 ]; then echo "$name: skipped at $(elapsed) s"; return; fi
    (timeout "$budget" python3 tools/bench_train.py "$a" "$b" "$@" --steps "$steps" --repeat "$rounds" --json "$RESULTS/$name.json" -- $FLAGS | grep -E '^\| ')
    echo "$name ended at $(elapsed) s"
}

# A profile plan's rule: the kernels a change touched, summed in each profile (tools/touched_kernels.py;
# --scaled compares them at one clock). The profiles list every kernel where TOP is set high enough (400).
touched_kernels() { python3 tools/touched_kernels.py "$@"; }  # touched_kernels NEW BASE [--scaled]: two profile outputs, with the change and without

# the GPU tests of MLA's fast path (quack's projections, FlashAttention-4, the whole model), for compare_profiles' TESTS
MLA_GPU_TESTS="test_mlas_rope_in_quacks_projections_matches_pytorchs_projections or test_mla_on_flash_attn4_matches_the_split_path or test_fast_kernels_and_pytorch_give_the_same_model and d12_flash_mla"

# A profile plan's calls on one change: CONFIG's profile from the tree in BASE_DIR (profile_base.txt),
# then from this one (profile_new.txt), every kernel listed; the rows the change touched, at one
# clock (touched.txt; where WATCH is set, the rows it matches compared with them: touched_kernels.py
# --watch); the GPU tests of tests/test_hopper_kernels.py that TESTS (-k) picks (gpu_tests.txt)
compare_profiles() {  # compare_profiles BASE_DIR CONFIG TESTS
    TOP=400 profile "$1" base "$2"
    TOP=400 profile . new "$2"
    touched_kernels "$RESULTS/profile_new.txt" "$RESULTS/profile_base.txt" --scaled ${WATCH:+--watch "$WATCH"} > "$RESULTS/touched.txt"; cat "$RESULTS/touched.txt"
    if [ "$(left)" -lt 60 ]; then echo "tests: skipped at $(elapsed) s"; echo "no time left" > "$RESULTS/gpu_tests.txt"; return; fi
    (timeout $(( $(left) - 15 )) python3 -m pytest -q -p no:cacheprovider tests/test_hopper_kernels.py -k "$3" \
        > "$RESULTS/gpu_tests.txt" 2>&1; echo "exit status $?" >> "$RESULTS/gpu_tests.txt")
    tail -3 "$RESULTS/gpu_tests.txt"; echo "tests ended at $(elapsed) s"
}

# The profile plans' rule on compare_profiles' files: "." (keep the change) if the touched rows at
# one clock are at least MS ms a step less with it and at least PASSED GPU tests passed with none
# failing, else ".base"
keep_rule() {  # keep_rule MS PASSED
    python3 - "$RESULTS/touched.txt" "$RESULTS/gpu_tests.txt" "$1" "$2" <<'PY'
import re, sys
touched, tests = (open(path).read() for path in sys.argv[1:3])
saved = re.search(r"scaled by that: [\d.]+ ms a step, (-?[\d.]+) more than with the change", touched)
passed = re.search(r"(\d+) passed", tests)
ok = "exit status 0" in tests and passed is not None and int(passed.group(1)) >= int(sys.argv[4])
print("." if ok and saved is not None and float(saved.group(1)) >= float(sys.argv[3]) else ".base")
PY
}

pack() { tar -czf "$OUT/results_$1.tgz" -C "$RESULTS" . ; }  # one file back, whatever the count of runs
