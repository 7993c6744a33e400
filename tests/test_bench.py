"""tools/bench_train.py on CPU: a row per config (and variant, in turn), a failed run reported in its
row, nanoGPT's train.py run in turn with the trainer (a stand-in with nanoGPT's command line and log
lines), and bad flags refused; the GPU tools' bad flags refused before they look for a GPU."""

import json
import subprocess
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
from bench_train import gpu_state, row, summary  # noqa: E402
from profile_train import QUEUE_FULL_US, host_lead, idle_gaps, launch_calls, table_name  # noqa: E402

TINY_MODEL = ["--n_layer", "1", "--n_head", "2", "--n_embd", "32", "--batch_size", "2", "--sequence_length", "32", "--device", "cpu"]


def tool(name, *args):
    return subprocess.run([sys.executable, str(REPO / "tools" / name), *args], capture_output=True, text=True, timeout=600)


def bench(*args):
    return tool("bench_train.py", *args)


def test_bench_prints_a_row_per_config():
    proc = bench("d12", "d12_post_norm", "--steps", "20", "--", *TINY_MODEL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| d12")]
    assert [r.split(" | ")[0] for r in rows] == ["| d12", "| d12_post_norm"]
    assert all(" | cpu x1 | 2x32x1x1 | " in r for r in rows)
    assert all(r.endswith(" | - | - | - |") for r in rows)  # no GPU here: no clock, power or energy to read


def test_bench_takes_the_gpus_clock_and_power_over_its_busy_samples_only():
    # (utilization %, SM clock MHz, power W, temperature C): the idle samples are the run's start-up
    samples = [(3, 1980, 90.0, 40), (95, 1980, 640.0, 55), (99, 1755, 700.0, 71), (97, 1830, 690.0, 66), (40, 1980, 300.0, 60)]
    assert gpu_state(samples) == {"sm_clock_mhz": 1830, "power_w": 690.0, "temperature_c": 66, "busy_samples": 3}
    assert gpu_state(samples[:1]) is None


def test_bench_gives_a_steps_energy_from_the_busy_power_and_the_median_step():
    summary = {"median_step_ms": 59.7, "tokens_per_s": 548_900.0, "mfu": 0.475, "peak_memory_gib": 10.3, "first_step_s": 18.9}
    info = {"model": "d12", "num_params": 123.7e6, "device": "NVIDIA H200", "world_size": 1, "grad_accumulation_steps": 1,
            "args": {"batch_size": 32, "sequence_length": 1024}, "summary": summary,
            "gpu_state": {"sm_clock_mhz": 1590, "power_w": 686.0, "temperature_c": 61, "busy_samples": 117}}
    assert row(info).endswith(" | 59.7 | 548,900 | 47.5% | 10.30 | 18.9 | 1590 | 686 | 41.0 |")  # 686 W x 59.7 ms


def test_bench_reports_a_failed_config_and_exits_nonzero():
    proc = bench("d12", "--steps", "20", "--", *TINY_MODEL, "--learning_rate", "-1")
    assert proc.returncode == 1
    assert "| d12 | failed: exit code 2 |" in proc.stdout
    assert "--learning_rate must be positive" in proc.stderr


def test_bench_runs_variants_in_turn_and_summarizes_them(tmp_path):
    out = tmp_path / "runs.json"
    proc = bench("d12", "--steps", "20", "--variant", "", "--variant", "--n_embd 64", "--repeat", "2", "--json", str(out), "--", *TINY_MODEL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split(" | ")[0] for line in proc.stdout.split("\n\n")[1].splitlines() if line.startswith("| d12")]
    assert rows == ["| d12", "| d12 --n_embd 64", "| d12 --n_embd 64", "| d12"]  # in turn, the second round reversed
    summary = proc.stdout.split("\n\n")[2].splitlines()
    assert summary[0] == "| config | runs | median tokens/s | range | vs first | paired vs first, mean (95% interval) |"
    assert [line.split(" | ")[:2] for line in summary[2:]] == [["| d12", "2"], ["| d12 --n_embd 64", "2"]]
    assert summary[2].endswith(" | 1.000x | - |") and summary[3].endswith(", 2 rounds |")
    records = json.loads(out.read_text())
    assert [(r["variant"], r["config"]["n_embd"], r["round"]) for r in records] == [("", 32, 1), ("--n_embd 64", 64, 1), ("--n_embd 64", 64, 2), ("", 32, 2)]  # the variant's flags win


def test_bench_runs_trainer_versions_in_turn_each_on_the_bundled_shards(tmp_path, monkeypatch):
    """A trainer script outside the checkout (where its own default finds no shards) runs in turn
    with the checkout's; a line put at its top marks each of its runs."""
    marks = tmp_path / "marks.txt"
    monkeypatch.setenv("BENCH_TEST_MARKS", str(marks))
    old = tmp_path / "old.py"
    old.write_text("import os; open(os.environ['BENCH_TEST_MARKS'], 'a').write('old ran\\n')\n" + (REPO / "train_gpt2_mod.py").read_text())
    new = str(REPO / "train_gpt2_mod.py")
    proc = bench("d12", "--steps", "20", "--trainer", str(old), "--trainer", new, "--repeat", "2", "--", *TINY_MODEL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split(" | ")[0] for line in proc.stdout.split("\n\n")[1].splitlines() if line.startswith("| d12")]
    assert rows == [f"| d12 {old}", f"| d12 {new}", f"| d12 {new}", f"| d12 {old}"]
    assert marks.read_text() == "old ran\n" * 2
    summary = proc.stdout.split("\n\n")[2].splitlines()
    assert [line.split(" | ")[0] for line in summary[2:]] == [f"| d12 {old}", f"| d12 {new}"] and summary[3].endswith(", 2 rounds |")


def bench_record(model, tokens_per_s, round_number):
    return {"model": model, "round": round_number, "summary": {"tokens_per_s": tokens_per_s}}


def test_bench_summary_pairs_each_run_with_the_first_configs_run_of_its_round():
    # B's rounds run at 0.97, 0.98 and 0.99 of A's while A's own speed doubles from round to round;
    # C misses round 3 and a failed run of B pairs with nothing
    infos = [bench_record("A", 100.0, 1), bench_record("B", 97.0, 1), bench_record("C", 50.0, 1),
             bench_record("B", 196.0, 2), bench_record("A", 200.0, 2), bench_record("C", 100.0, 2),
             bench_record("A", 400.0, 3), bench_record("B", 396.0, 3), {"model": "B", "failed": "exit code 1", "round": 4}]
    lines = summary(infos).splitlines()
    assert lines[2] == "| A | 3 | 200 | 100-400 | 1.000x | - |"
    # mean 0.980, sd 0.010 over 3 rounds: 4.303 x 0.010 / sqrt(3) = 0.025 either side
    assert lines[3] == "| B | 3 | 196 | 97-396 | 0.980x | 0.980x (0.955-1.005), 3 rounds |"
    assert lines[4] == "| C | 2 | 75 | 50-100 | 0.375x | 0.500x (0.500-0.500), 2 rounds |"
    assert summary([bench_record("A", 100.0, 1), bench_record("B", 97.0, 1)]).splitlines()[3].endswith(" | 0.970x, 1 round |")


def test_bench_summary_pairs_against_the_run_named(tmp_path):
    # under two trainers: the new trainer's MLA over the old one's, round by round (1.01 and 1.03)
    infos = [{**bench_record("mla", speed, n), "trainer": trainer} for n, trainer, speed in
             [(1, "old.py", 100.0), (1, "new.py", 101.0), (2, "new.py", 206.0), (2, "old.py", 200.0)]]
    lines = summary(infos, against="mla old.py").splitlines()
    assert lines[0].startswith("| config | runs | median tokens/s | range | vs mla old.py | paired vs mla old.py, mean")
    assert lines[2] == "| mla old.py | 2 | 150 | 100-200 | 1.000x | - |"
    assert lines[3].startswith("| mla new.py | 2 | 154 | 101-206 | 1.023x | 1.020x (")
    path = tmp_path / "runs.json"
    path.write_text(json.dumps(infos))
    proc = bench("--summarize", str(path), "--against", "mla new.py")
    assert proc.returncode == 0 and proc.stdout.splitlines()[2].startswith("| mla old.py | 2 | 150 | 100-200 | 0.977x | 0.980x (")
    proc = bench("--summarize", str(path), "--against", "mla")
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --against 'mla': no run has that label; the runs are 'mla old.py', 'mla new.py'"


def test_bench_summarizes_earlier_json_files_keeping_each_files_rounds_apart(tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps([bench_record("A", 100.0, 1), bench_record("B", 90.0, 1)]))
    second.write_text(json.dumps([bench_record("A", 200.0, 1), bench_record("B", 190.0, 1), bench_record("B", 1.0, None)]))
    proc = bench("--summarize", str(first), str(second))
    assert proc.returncode == 0, proc.stderr[-2000:]
    # two rounds (0.90 and 0.95), not one round of four runs; the run without a round pairs with nothing
    assert proc.stdout.splitlines()[3] == "| B | 3 | 90 | 1-190 | 0.600x | 0.925x (0.607-1.243), 2 rounds |"


@pytest.mark.parametrize("content, message", [(None, "No such file or directory"), ("{", "not a --json file of this tool (not JSON)"),
                                              ('{"model": "d12"}', "not a --json file of this tool (no list of run records)"), ("[]", "the files hold no runs")])
def test_bench_summarize_refuses_what_is_not_its_json(tmp_path, content, message):
    path = tmp_path / "runs.json"
    if content is not None:
        path.write_text(content)
    proc = bench("--summarize", str(path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr


def test_bench_refuses_an_unknown_config():
    proc = bench("d13")
    assert proc.returncode == 2 and "unknown model 'd13'" in proc.stderr


# A stand-in for a nanoGPT checkout: its train.py takes --key=value settings through configurator.py,
# which (as nanoGPT's) refuses unknown keys and values of another type, reads the data, and prints
# nanoGPT's log line for each step, step i taking 100 + i ms. It records its flags in FLAGS_FILE.
FAKE_NANOGPT_TRAIN = """
import sys, types, numpy as np, torch
dataset, out_dir, device, dtype = "", "", "cuda", "bfloat16"
batch_size = block_size = gradient_accumulation_steps = max_iters = eval_interval = eval_iters = log_interval = 0
n_layer, n_head, n_embd = 12, 12, 768
always_save_checkpoint = compile = True
exec(open("configurator.py").read())
open(FLAGS_FILE, "w").write(" ".join(sys.argv[1:]))
assert len(np.fromfile(f"data/{dataset}/train.bin", dtype=np.uint16)) > batch_size * block_size
raw_model = torch.nn.Linear(n_embd, n_embd)
raw_model.config = types.SimpleNamespace(n_layer=n_layer, n_embd=n_embd)
for i in range(max_iters + 1):
    print(f"iter {i}: loss 10.8123, time {100 + i:.2f}ms, mfu -100.00%")
"""
FAKE_NANOGPT_CONFIGURATOR = """
import sys
from ast import literal_eval
for arg in sys.argv[1:]:
    key, val = arg[2:].split("=")
    assert key in globals(), key
    try:
        val = literal_eval(val)
    except (SyntaxError, ValueError):
        pass
    assert type(val) == type(globals()[key]), key
    globals()[key] = val
"""


def fake_nanogpt(folder, flags_file, fail=False):
    folder.mkdir()
    (folder / "train.py").write_text(FAKE_NANOGPT_TRAIN.replace("FLAGS_FILE", repr(str(flags_file))) + ("raise SystemExit(3)\n" if fail else ""))
    (folder / "configurator.py").write_text(FAKE_NANOGPT_CONFIGURATOR)
    (folder / "model.py").write_text("")
    return folder


def test_bench_runs_nanogpt_first_in_each_round_at_the_trainers_shape(tmp_path):
    checkout = fake_nanogpt(tmp_path / "nanoGPT", tmp_path / "flags.txt")
    proc = bench("d12", "--steps", "20", "--repeat", "2", "--nanogpt", str(checkout), "--", *TINY_MODEL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.split("\n\n")[1].splitlines() if line.startswith("| d12") or line.startswith("| nanoGPT")]
    assert [r.split(" | ")[0] for r in rows] == ["| nanoGPT train.py", "| d12"] * 2
    # steps 0-19 took 100-119 ms: the median of the 11th to 20th is 114.5 ms, 2 x 32 tokens each
    assert rows[0].startswith("| nanoGPT train.py | 0.0M | cpu x1 | 2x32x1x1 | 114.5 | 559 | - | - | 0.1 |")
    summary = proc.stdout.split("\n\n")[2].splitlines()
    assert summary[2].startswith("| nanoGPT train.py | 2 | 559 | 559-559 | 1.000x |") and summary[3].startswith("| d12 | 2 |")
    flags = (tmp_path / "flags.txt").read_text().split()
    assert flags[:7] == ["--dataset=random", "--batch_size=2", "--block_size=32", "--gradient_accumulation_steps=1", "--max_iters=19", "--eval_interval=20", "--eval_iters=1"]
    assert {"--compile=False", "--device=cpu", "--dtype=float32", "--n_layer=1", "--n_head=2", "--n_embd=32"} <= set(flags)


def test_bench_reports_a_failed_nanogpt_run_and_refuses_a_folder_that_is_not_a_checkout(tmp_path):
    checkout = fake_nanogpt(tmp_path / "nanoGPT", tmp_path / "flags.txt", fail=True)
    proc = bench("d12", "--steps", "20", "--nanogpt", str(checkout), "--", *TINY_MODEL)
    assert proc.returncode == 1 and "| nanoGPT train.py | failed: exit code 3 |" in proc.stdout and "| d12 | " in proc.stdout
    for flags, message in [(["--nanogpt", str(tmp_path)], f"--nanogpt {tmp_path}: not a nanoGPT checkout (it needs train.py, model.py, configurator.py)"),
                           (["--nanogpt", str(checkout), "--nproc", "2"], "--nanogpt runs on one GPU: leave out --nproc")]:
        proc = bench("d12", *flags)
        assert proc.returncode == 2 and proc.stderr.strip() == f"error: {message}"


def test_bench_takes_its_ratios_against_nanogpt_by_its_label(tmp_path):
    checkout = fake_nanogpt(tmp_path / "nanoGPT", tmp_path / "flags.txt", fail=True)
    proc = bench("d12", "--steps", "20", "--nanogpt", str(checkout), "--against", "nanoGPT train.py", "--", *TINY_MODEL)
    assert proc.returncode == 1, proc.stderr  # the failed nanoGPT run, not a refused --against
    assert "| config | runs | median tokens/s | range | vs nanoGPT train.py | paired vs nanoGPT train.py, mean (95% interval) |" in proc.stdout


@pytest.mark.parametrize("flags, message", [(["--steps", "5"], "--steps must be at least 20 (the first 10 steps are warm-up)"), (["--repeat", "0"], "--repeat must be at least 1, not 0"), (["--nproc", "0"], "--nproc must be at least 1, not 0"),
                                            (["--summarize", "a.json"], "--summarize runs nothing: leave out the configs and the trainer flags"),
                                            (["--trainer", "no_such_trainer.py"], "--trainer no_such_trainer.py: no such file"),
                                            (["d12_flash_mla", "--against", "d12 x.py"], "--against 'd12 x.py': no run has that label; the runs are 'd12', 'd12_flash_mla'")])
def test_bench_refuses_bad_flags(flags, message):
    proc = bench("d12", *flags)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {message}"


@pytest.mark.parametrize("flags, message", [(["--timed", "0"], "--timed and --steps must be at least 1"), (["--name_width", "-1"], "--name_width must not be negative"),
                                            (["--", "--model", "d13"], "unknown model 'd13'")])
def test_profile_refuses_bad_flags_before_looking_for_a_gpu(flags, message):
    proc = tool("profile_train.py", *flags)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "name, flags, message",
    [
        ("bench_attention.py", ["--batch", "0"], "--batch, --seq_len and --heads must be at least 1"),
        ("bench_fa4_tiles.py", ["--reps", "0"], "--batch, --seq_len, --heads and --reps must be at least 1"),
        ("sliding_window_memory.py", ["--window", "0"], "--window, --seq_lens, --tokens and --reps must be at least 1"),
        ("sliding_window_memory.py", ["--seq_lens", "1024", "-5"], "--window, --seq_lens, --tokens and --reps must be at least 1"),
        ("bench_quack_mlp.py", ["--n_embd", "100"], "--tokens and --reps must be at least 1, --n_embd a positive multiple of 8"),
        ("bench_mla_gemms.py", ["--model", "d12"], "--model d12: not a named config with use_flash_mla"),
        ("bench_mla_gemms.py", ["--calls", "0"], "--tokens, --reps and --calls must be at least 1"),
        ("bench_mla_gemms.py", ["--match", "no such GEMM"], "--match 'no such GEMM': no GEMM's name contains it"),
    ],
)
def test_gpu_benchmarks_refuse_bad_flags_before_looking_for_a_gpu(name, flags, message):
    proc = tool(name, *flags)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {message}"


def test_profile_lists_kernel_names_cut_to_the_width_asked_or_whole():
    name = "kernel_cutlass_kernel_quackgemm" + "x" * 100 + "_tile_128x192|cluster_2x1"
    assert table_name(name, 90) == name[:90]
    assert table_name(name, 0) == name.replace("|", "/") and table_name(name, 0).endswith("_tile_128x192/cluster_2x1")


def test_profile_finds_the_gaps_between_busy_stretches_of_the_gpu():
    """Kernels of two streams overlap: a gap is only where no kernel runs, and it is named by the
    kernel that ran last before it (the one that ended last) and the one after it."""
    spans = [(110, 120, "next"), (10, 20, "side stream"), (0, 100, "long"), (30, 40, "side stream"), (125, 130, "last")]
    assert idle_gaps(spans) == [(10, "long", "next"), (5, "next", "last")]
    assert idle_gaps([(0, 5, "only")]) == []


def test_profile_says_whether_the_host_runs_ahead_of_the_gpu():
    """Medians and ranges of the host's launch and wait; a host that does not wait is named as
    what sets the pace, and one that waits is not."""
    ahead = host_lead([(40.0, 5.0), (50.0, 2.0), (45.0, 3.0)])
    assert ahead.startswith("host, per step (median, range): 45.0 ms (40.0-50.0) to launch it, then 3.00 ms (2.00-5.00) waiting")
    assert "set the step's pace" not in ahead
    assert host_lead([(60.0, 0.02), (61.0, 0.01), (59.0, 3.0)]).endswith("set the step's pace")
    assert host_lead([]).startswith("host: too few timed steps")


def test_profile_counts_the_hosts_time_in_kernel_launches():
    """Runtime and driver launches count, other host events do not; calls longer than the queue
    threshold are counted apart, as the host waiting for room in a full launch queue."""
    calls = [("cudaLaunchKernel", 4.0), ("cuLaunchKernelEx", 6.0), ("cudaLaunchKernel", QUEUE_FULL_US + 990.0), ("aten::mm", 5000.0), ("cudaMemcpyAsync", 800.0)]
    text = launch_calls(calls, steps=2)
    assert text.startswith("host, per step under the profiler: 0.53 ms in 2 kernel launch calls, 0.52 ms of it in 0.5 calls longer than")
    assert launch_calls([("aten::mm", 10.0)], steps=1) == "host: the profiler recorded no kernel launch calls"


@pytest.mark.parametrize("trainers_table", [False, True])
def test_fa4_tile_rows_set_the_trainers_table_aside_unless_asked(monkeypatch, trainers_table):
    """bench_fa4_tiles' rows time FA4's own choice or a candidate only with the trainer's forward
    tile table set aside (the trainer hands FA4 that tile, and FA4 then asks no chooser); the row
    of the table keeps it. The table comes back after the row either way."""
    import bench_fa4_tiles

    m = bench_fa4_tiles.m
    table = {(96, 64): {"tile_mn": (128, 128)}}
    cache = {"a kernel": None}
    fa4 = type("FA4", (), {"_tile_size_fwd_sm90": staticmethod(lambda *a: "FA4's own"), "_flash_attn_fwd": type("Fwd", (), {"compile_cache": cache})})
    monkeypatch.setattr(m, "flash_attn4", fa4)
    monkeypatch.setattr(m, "FLASH_ATTN4_SM90_FORWARD_TILES", table)
    with bench_fa4_tiles.TileOverride("forward", "a candidate", trainers_table=trainers_table):
        assert m.FLASH_ATTN4_SM90_FORWARD_TILES == (table if trainers_table else {})
        assert fa4._tile_size_fwd_sm90() == "a candidate" and cache == {}
    assert m.FLASH_ATTN4_SM90_FORWARD_TILES is table and fa4._tile_size_fwd_sm90() == "FA4's own"


def test_interleaved_bench_alternates_the_configs_and_pairs_them_by_round(tmp_path):
    out = tmp_path / "blocks.json"
    proc = tool("bench_interleaved.py", "d12", "d12_post_norm", "--rounds", "3", "--steps", "2", "--warmup", "1", "--json", str(out), "--", *TINY_MODEL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split(" | ")[:2] for line in proc.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert rows == [["| 1", "d12"], ["| 1", "d12_post_norm"], ["| 2", "d12_post_norm"], ["| 2", "d12"], ["| 3", "d12"], ["| 3", "d12_post_norm"]]
    assert "| d12_post_norm | 3 |" in proc.stdout and "3 rounds |" in proc.stdout
    again = bench("--summarize", str(out))  # the records are bench_train's
    assert again.returncode == 0 and "3 rounds |" in again.stdout, again.stderr


@pytest.mark.parametrize(
    "flags, message",
    [
        (["d12", "d13"], "unknown model 'd13'"),
        (["d12", "d12"], "name at least two different configs to compare"),
        (["d12", "d12_post_norm", "--rounds", "0"], "--rounds, --steps and --warmup must be at least 1, --settle at least 0"),
        (["d12", "d12_post_norm", "--", "--batch_size", "0"], "--batch_size"),
    ],
)
def test_interleaved_bench_refuses_bad_flags_before_building_a_model(flags, message):
    proc = tool("bench_interleaved.py", *flags)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "first step" not in proc.stdout
