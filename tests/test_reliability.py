"""Faults a run must survive without losing work: a directory that holds another run's files, a
branch from an older checkpoint, changed flags on resume, a full disk, a diverging loss, Ctrl-C and
kills, two runs in one directory. Kills and interrupts run the trainer in a subprocess."""

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, losses, read_metrics, run_trainer
from conftest import SHORT_TRAIN as SHORT
from train_gpt2_mod import GPTConfig, MetricsLog, TrainingStopped, load_checkpoint, main, save_checkpoint


def strict_json(line):
    """json.loads that refuses NaN and Infinity, which are not JSON."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


def start_trainer(*flags):
    """The trainer as from a terminal: with Ctrl-C's signal at its default even where these tests run
    as a background job of a script, whose children inherit SIGINT ignored (and Python keeps it so)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(REPO / "train_gpt2_mod.py"), *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def read_until(proc, text):
    """Read the trainer's stdout until a line holds text."""
    for line in proc.stdout:
        if text in line:
            return
    raise AssertionError(f"the trainer ended before printing {text!r}: {proc.stderr.read()[-2000:]}")


def test_a_fresh_run_refuses_a_directory_with_only_checkpoints(tmp_path):
    main([*SHORT, "--num_iterations", "2", "--output_dir", str(tmp_path / "a")])
    for name in ("ckpt_000002.pt", "run.json"):
        other = tmp_path / name.split(".")[0]
        other.mkdir()
        (other / name).write_bytes((tmp_path / "a" / name).read_bytes())
        proc = run_trainer(*SHORT, "--num_iterations", "2", "--output_dir", str(other), check=False)
        assert proc.returncode == 2 and "already holds a run" in proc.stderr and name in proc.stderr
        assert (other / name).exists()


def test_a_branch_from_an_older_checkpoint_sets_the_later_ones_aside(tmp_path):
    flags = [*SHORT, "--num_iterations", "8", "--save_every", "2", "--val_loss_every", "0", "--output_dir", str(tmp_path)]
    main(flags)
    # branch from step 2 with a lower learning rate, and kill it once it has saved step 4
    branch = start_trainer(*flags, "--resume_from", str(tmp_path / "ckpt_000002.pt"), "--learning_rate", "1e-3")
    read_until(branch, "saved")
    branch.kill()
    branch.wait()
    main([*flags, "--resume_from", "latest", "--learning_rate", "1e-3"])
    records = read_metrics(tmp_path)
    assert sorted(losses(records)) == list(range(1, 9))  # each step once: one timeline
    assert all(r["lr"] <= 1e-3 for r in records if "lr" in r and r["step"] > 2)  # the branch's, not the first run's 3e-3
    aside = list(tmp_path.glob("superseded_*"))
    assert len(aside) == 1  # the first run's later checkpoints and its log, kept
    assert sorted(p.name for p in aside[0].iterdir()) == ["ckpt_000004.pt", "ckpt_000006.pt", "ckpt_000008.pt", "metrics.jsonl"]
    assert max(losses([json.loads(line) for line in (aside[0] / "metrics.jsonl").read_text().splitlines()])) == 8


def test_changed_training_flags_on_resume_are_named_or_refused(tmp_path):
    main([*SHORT, "--num_iterations", "4", "--output_dir", str(tmp_path)])
    proc = run_trainer(*SHORT, "--num_iterations", "6", "--learning_rate", "1e-3", "--output_dir", str(tmp_path), "--resume_from", "latest")
    assert "--num_iterations 4 -> 6" in proc.stderr and "--learning_rate 0.003 -> 0.001" in proc.stderr
    # the checkpoint's data position (4 steps of 256 tokens) is not in a 600-token shard
    from train_gpt2_mod import write_shard

    write_shard(tmp_path / "small.bin", list(range(600)))
    proc = run_trainer(*SHORT, "--num_iterations", "8", "--input_bin", str(tmp_path / "small.bin"), "--output_dir", str(tmp_path), "--resume_from", "latest", check=False)
    assert proc.returncode == 2 and "data position" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_trainer(*SHORT, "--num_iterations", "3", "--output_dir", str(tmp_path), "--resume_from", "latest", check=False)
    assert proc.returncode == 2 and "nothing is left to train" in proc.stderr


def test_tokens_count_on_across_a_resume_with_another_batch_size(tmp_path):
    """metrics.jsonl's tokens (the axis runs are compared on) go on from the checkpoint's count when a
    branch changes the tokens per step: 2 steps of 4 x 64 tokens, then steps of 2 x 64. The first
    checkpoint is made as 1.8.0 wrote them, without the count."""
    main([*SHORT, "--num_iterations", "2", "--output_dir", str(tmp_path)])
    first = tmp_path / "ckpt_000002.pt"
    old = load_checkpoint(first)
    del old["tokens"]
    torch.save(old, tmp_path / "old.pt")  # not over the file the checkpoint is mapped from
    (tmp_path / "old.pt").replace(first)
    for steps in ("4", "5"):  # the second resume starts from a checkpoint the branch wrote
        main([*SHORT, "--batch_size", "2", "--num_iterations", steps, "--output_dir", str(tmp_path), "--resume_from", "latest"])
    tokens = {r["step"]: r["tokens"] for r in read_metrics(tmp_path) if "train_loss" in r}
    assert tokens == {1: 256, 2: 512, 3: 640, 4: 768, 5: 896}


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root only): too small for a checkpoint of the tiny model."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)])  # lazy: a file a failed test left open does not keep it mounted


def test_a_full_disk_stops_with_one_line_and_no_partial_file(small_disk):
    proc = run_trainer(*SHORT, "--num_iterations", "2", "--val_loss_every", "0", "--output_dir", str(small_disk), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "no space left on the device writing" in proc.stderr and "the partial file was removed" in proc.stderr
    assert not list(small_disk.glob("*.tmp")) and not list(small_disk.glob("ckpt_*"))
    for line in (small_disk / "metrics.jsonl").read_text().splitlines():
        strict_json(line)


def test_a_metrics_append_that_fills_the_disk_is_cut_back(small_disk):
    log = MetricsLog(small_disk / "metrics.jsonl")
    try:
        log.write({"step": 0, "val_loss": 1.0})
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        (small_disk / "filler").write_bytes(b"x" * (free - 10))
        with pytest.raises(TrainingStopped, match="No space left on device"):
            for step in range(1, 1000):
                log.write({"step": step, "train_loss": 1.0, "note": "y" * 200})
    finally:
        log.close()
    lines = (small_disk / "metrics.jsonl").read_text().splitlines()
    assert [strict_json(line)["step"] for line in lines] == list(range(len(lines)))  # whole lines only


def test_a_resume_drops_a_torn_last_line_of_metrics(tmp_path):
    flags = [*SHORT, "--num_iterations", "4", "--save_every", "2", "--val_loss_every", "0", "--output_dir", str(tmp_path)]
    main(flags)
    (tmp_path / "ckpt_000004.pt").unlink()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "train_lo')
    proc = run_trainer(*flags, "--resume_from", "latest")
    assert "dropping a torn last line" in proc.stderr
    assert sorted(losses(read_metrics(tmp_path))) == [1, 2, 3, 4]


def test_a_diverging_run_stops_and_keeps_finite_checkpoints(tmp_path):
    proc = run_trainer(*SHORT, "--num_iterations", "6", "--learning_rate", "1e6", "--save_every", "1", "--output_dir", str(tmp_path), check=False)
    assert proc.returncode == 1 and "diverged" in proc.stderr and "Traceback" not in proc.stderr
    records = [strict_json(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["train_loss"] is None  # the diverged step, logged as null
    checkpoints = sorted(tmp_path.glob("ckpt_*.pt"))
    assert checkpoints and str(checkpoints[-1]) in proc.stderr  # named as the one to resume
    assert len(checkpoints) < records[-1]["step"]  # the diverged step was not saved
    for path in checkpoints:
        assert all(torch.isfinite(t).all() for t in load_checkpoint(path)["model"].values())


def test_ctrl_c_stops_with_one_line_naming_the_checkpoint(tmp_path):
    proc = start_trainer(*SHORT, "--num_iterations", "500", "--save_every", "2", "--val_loss_every", "0", "--output_dir", str(tmp_path))
    read_until(proc, "saved")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert stderr.strip().splitlines()[-1].startswith("interrupted: to go on, resume with --resume_from latest (")
    assert "Traceback" not in stderr and "ckpt_" in stderr


def test_an_interrupted_checkpoint_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def interrupted_save(obj, f):
        f.write(b"x" * 1000)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted_save)
    model = torch.nn.Linear(2, 2)
    loader = type("Loader", (), {"state_dict": lambda self: {}})()
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "ckpt_000001.pt", model, torch.optim.AdamW(model.parameters()), 1, 0.0, loader, GPTConfig(), argparse.Namespace(), 0, 0)
    assert list(tmp_path.iterdir()) == []


def test_a_start_removes_partial_files_a_killed_run_left(tmp_path):
    flags = [*SHORT, "--num_iterations", "2", "--val_loss_every", "0", "--output_dir", str(tmp_path)]
    main(flags)
    (tmp_path / "ckpt_000004.pt.tmp").write_bytes(b"partial")
    proc = run_trainer(*flags[:-4], "--num_iterations", "3", "--output_dir", str(tmp_path), "--resume_from", "latest")
    assert "ckpt_000004.pt.tmp" in proc.stdout and not list(tmp_path.glob("*.tmp"))


def test_a_second_run_in_a_busy_directory_is_refused(tmp_path):
    first = start_trainer(*SHORT, "--num_iterations", "500", "--val_loss_every", "0", "--output_dir", str(tmp_path))
    try:
        read_until(first, "step     1/")
        proc = run_trainer(*SHORT, "--num_iterations", "2", "--output_dir", str(tmp_path), "--overwrite", "1", check=False)
        assert proc.returncode == 2 and f"is in use by another run (process {first.pid})" in proc.stderr
    finally:
        first.kill()
        first.wait()
    # a killed run's lock goes with it
    run_trainer(*SHORT, "--num_iterations", "2", "--output_dir", str(tmp_path), "--overwrite", "1")


def test_keep_last_keeps_the_newest_checkpoints(tmp_path):
    main([*SHORT, "--num_iterations", "6", "--save_every", "1", "--keep_last", "2", "--val_loss_every", "0", "--output_dir", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.glob("ckpt_*.pt")) == ["ckpt_000005.pt", "ckpt_000006.pt"]


def test_checkpoints_load_without_running_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    torch.save({"model": {}, "config": {}, "step": 0, "x": Payload()}, tmp_path / "ckpt_000001.pt")
    proc = run_trainer(*SHORT, "--output_dir", str(tmp_path / "o"), "--resume_from", str(tmp_path / "ckpt_000001.pt"), check=False)
    assert proc.returncode == 2 and "not a readable checkpoint" in proc.stderr and "could run code" in proc.stderr
    assert not (tmp_path / "pwned").exists()
