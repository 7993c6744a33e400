"""tools/compare_runs.py (on runs the tests write by hand, and on real ones) and sweep.sh."""

import json
import math
import statistics
import subprocess
import sys

import pytest

from conftest import REPO, SHORT_TRAIN

sys.path.insert(0, str(REPO / "tools"))
import compare_runs  # noqa: E402


def fake_run(path, model, seed, final_losses, tokens_per_step=256, seconds_per_step=1.0, compile_s=0.0, **args):
    """A finished run directory: val loss logged at steps 0, 2, 4, ... ending at final_losses[-1];
    compile_s is added to the first step's time."""
    path.mkdir(parents=True)

    def seconds(step):
        return step * seconds_per_step + (compile_s if step else 0.0)

    records = [{"step": 2 * i, "val_loss": loss, "tokens": 2 * i * tokens_per_step, "train_time_s": seconds(2 * i)} for i, loss in enumerate(final_losses)]
    records += [{"step": s, "train_loss": 5.0, "tokens": s * tokens_per_step, "train_time_s": seconds(s)} for s in range(1, 2 * len(final_losses) - 1)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    info = {"model": model, "num_params": 1e6, "world_size": 1, "device": "cpu", "tokens_per_step": tokens_per_step,
            "args": {"seed": seed, "sequence_length": 64, "input_bin": "a", "input_val_bin": "b", "val_tokens": 4096} | args,
            "summary": {"tokens_per_s": 1000.0, "peak_memory_gib": None}}
    (path / "run.json").write_text(json.dumps(info))
    return path


def compare(tmp_path, *flags):
    return subprocess.run([sys.executable, str(REPO / "tools/compare_runs.py"), *flags], capture_output=True, text=True, cwd=tmp_path)


def test_intervals_match_a_hand_computation():
    values = [4.0, 4.2, 4.1]
    stats = compare_runs.interval(values)
    sd = math.sqrt(((4.0 - 4.1) ** 2 + (4.2 - 4.1) ** 2 + 0) / 2)  # 0.1
    assert stats["mean"] == pytest.approx(4.1) and stats["sd"] == pytest.approx(sd)
    assert stats["half_width"] == pytest.approx(4.303 * 0.1 / math.sqrt(3))  # t(0.975, 2 df) = 4.303
    assert compare_runs.interval([4.0])["half_width"] is None
    # Welch: equal n = 3, sds 0.1 and 0.2: se^2 = 0.01/3 + 0.04/3, df = (0.05/3)^2 / ((0.01/3)^2/2 + (0.04/3)^2/2) = 2.94
    a, b = compare_runs.interval([4.0, 4.1, 4.2]), compare_runs.interval([4.5, 4.7, 4.9])
    d = compare_runs.difference(a, b)
    assert d["df"] == pytest.approx(2.941, abs=1e-3)
    assert d["half_width"] == pytest.approx(4.303 * math.sqrt(0.05 / 3))  # df 2.94 takes the 2-df quantile: wider
    assert d["difference"] == pytest.approx(-0.6) and d["verdict"] == "better"


@pytest.mark.parametrize(
    "losses_b, verdict",
    [([5.0, 5.1, 5.2], "better"), ([3.0, 3.1, 3.2], "worse"), ([4.0, 4.3, 4.1], "not distinguishable at 3 seeds")],
)
def test_verdicts(losses_b, verdict):
    """A config with a lower loss than the baseline is better; overlapping ones are not told apart."""
    a, b = compare_runs.interval([4.0, 4.1, 4.2]), compare_runs.interval(losses_b)
    assert compare_runs.difference(a, b)["verdict"] == verdict
    assert compare_runs.difference(compare_runs.interval([4.0]), b)["verdict"].startswith("not distinguishable at 1 seed")


def test_runs_are_grouped_by_config_with_a_verdict_against_the_baseline(tmp_path):
    dirs = [fake_run(tmp_path / f"base{s}", "d12", s, [10.0, 6.0, 5.0 + 0.1 * s]) for s in range(3)]
    dirs += [fake_run(tmp_path / f"var{s}", "d12_post_norm", s, [10.0, 6.0, 4.0 + 0.1 * s]) for s in range(3)]
    (tmp_path / "compare.md").write_text("a file a glob matches")
    proc = compare(tmp_path, *map(str, dirs), str(tmp_path / "compare.md"), "--baseline", "d12", "--json", "c.json")
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()
    assert rows[0].startswith("| config | runs | parameters | val loss at 1,024 tokens | val loss at 3 s after step 1 | vs d12 at equal tokens | verdict")
    assert rows[2].startswith("| d12 | 3 | 1.0M | 5.1000 ± 0.2484 |")  # t(2) * 0.1 / sqrt(3)
    assert "| d12_post_norm | 3 |" in rows[3] and "-1.0000 ± " in rows[3] and "| better |" in rows[3]
    result = json.loads((tmp_path / "c.json").read_text())
    assert result["configs"]["d12"]["seeds"] == [0, 1, 2]
    assert result["configs"]["d12_post_norm"]["vs_baseline"]["at_tokens"]["verdict"] == "better"
    assert "skipping" in proc.stderr


@pytest.mark.parametrize("compile_s", [0.0, 30.0])
def test_equal_training_time_interpolates_and_leaves_out_the_compile(tmp_path, compile_s):
    """Time counts from the end of step 1: a cold compile in one run (30 s more in its first step)
    does not move the comparison."""
    fast = fake_run(tmp_path / "fast", "d12", 1, [10.0, 6.0, 5.0], seconds_per_step=1.0, compile_s=compile_s)
    slow = fake_run(tmp_path / "slow", "d12_flash_mla", 1, [10.0, 6.0, 5.0], seconds_per_step=2.0)
    result = compare_runs.compare([compare_runs.load_run(fast), compare_runs.load_run(slow)], "d12")
    assert result["time_s"] == 3.0  # after step 1, the fast run's last val (step 4) is at 3 s, the slow one's at 6 s
    assert result["configs"]["d12"]["at_time"]["mean"] == 5.0
    assert result["configs"]["d12_flash_mla"]["at_time"]["mean"] == pytest.approx(5.75)  # 3 s: between step 2 (2 s) and 4 (6 s)


def test_group_by_splits_a_config_by_a_flag(tmp_path):
    """Runs of one config under two --kernels choices: without --group_by they are one group of four
    seeds; with it, two groups compared with each other."""
    dirs = [fake_run(tmp_path / f"{k}{s}", "d12", s, [10.0, 6.0, loss + 0.01 * s], kernels=k) for k, loss in (("pytorch", 5.0), ("auto", 4.0)) for s in range(2)]
    proc = compare(tmp_path, *map(str, dirs), "--json", "one.json")
    assert proc.returncode == 0, proc.stderr
    assert list(json.loads((tmp_path / "one.json").read_text())["configs"]) == ["d12"]
    proc = compare(tmp_path, *map(str, dirs), "--group_by", "kernels", "--baseline", "d12 --kernels pytorch", "--json", "two.json")
    assert proc.returncode == 0, proc.stderr
    configs = json.loads((tmp_path / "two.json").read_text())["configs"]
    assert list(configs) == ["d12 --kernels pytorch", "d12 --kernels auto"]
    assert configs["d12 --kernels auto"]["seeds"] == [0, 1]
    assert configs["d12 --kernels auto"]["vs_baseline"]["at_tokens"]["difference"] == pytest.approx(-1.0)
    assert "| d12 --kernels auto |" in proc.stdout
    proc = compare(tmp_path, *map(str, dirs), "--group_by", "kernal")
    assert proc.returncode == 2 and "--group_by kernal: no run has a flag --kernal" in proc.stderr


@pytest.mark.parametrize("change, message", [(dict(tokens_per_step=512), "tokens per step"), (dict(sequence_length=128), "--sequence_length"), (dict(input_bin="other"), "--input_bin")])
def test_runs_of_different_setups_are_refused(tmp_path, change, message):
    a = fake_run(tmp_path / "a", "d12", 1, [10.0, 5.0])
    tokens_per_step = change.pop("tokens_per_step", 256)
    b = fake_run(tmp_path / "b", "d12_post_norm", 1, [10.0, 5.0], tokens_per_step=tokens_per_step, **change)
    proc = compare(tmp_path, str(a), str(b))
    assert proc.returncode == 2 and f"differ in {message}" in proc.stderr and "Traceback" not in proc.stderr


def test_compare_rejects_a_directory_without_a_run(tmp_path):
    proc = compare(tmp_path, str(tmp_path))
    assert proc.returncode == 2 and "is not a finished run" in proc.stderr


def test_sweep_trains_configs_with_seeds_and_continues_where_it_stopped(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "sweep"
    flags = [*SHORT_TRAIN[2:], "--num_iterations", "4", "--warmup_iters", "2", "--val_loss_every", "2", "--save_every", "2"]  # [2:]: not its --model
    sweep = ["bash", str(REPO / "sweep.sh"), "--out", str(out), "--models", "d12 d12_post_norm", "--seeds", "2", "--", *flags]
    proc = subprocess.run(sweep, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sweep.sh [4/4] d12_post_norm seed 1338: starting" in proc.stdout
    png = (out / "compare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # four panels of curves, not an empty figure
    rows = (out / "compare.md").read_text().splitlines()
    assert [r.split("|")[1].strip() for r in rows[2:]] == ["d12", "d12_post_norm"]
    assert [r.split("|")[2].strip() for r in rows[2:]] == ["2", "2"]
    result = json.loads((out / "compare.json").read_text())
    assert result["tokens"] == 4 * 4 * 64 and result["configs"]["d12"]["seeds"] == [1337, 1338]
    seeds = [statistics.fmean([json.loads(l)["train_loss"] for l in (out / "d12" / f"seed{s}" / "metrics.jsonl").read_text().splitlines() if "train_loss" in l]) for s in (1337, 1338)]
    assert seeds[0] != seeds[1]  # the seed changes the run
    # an interrupted sweep: one run stopped after its step-2 checkpoint, another never started
    stopped = out / "d12_post_norm" / "seed1337"
    (stopped / "run.json").unlink()
    (stopped / "ckpt_000004.pt").rename(stopped / "ckpt_000002.pt")  # keep_last left only the last; pretend it is step 2's
    import shutil

    shutil.rmtree(out / "d12_post_norm" / "seed1338")
    again = subprocess.run(sweep, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[1/4] d12 seed 1337: finished before, kept" in again.stdout
    assert "[3/4] d12_post_norm seed 1337: resuming" in again.stdout and "[4/4] d12_post_norm seed 1338: starting" in again.stdout
