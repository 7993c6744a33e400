import shutil
import subprocess
import sys

import pytest
import torch

from conftest import REPO, TINY, losses, read_metrics, run_trainer
from conftest import SHORT_TRAIN as SHORT
from train_gpt2_mod import main


def test_loss_falls_on_bundled_data(tmp_path):
    main([*SHORT, "--num_iterations", "40", "--val_loss_every", "20", "--output_dir", str(tmp_path)])
    records = read_metrics(tmp_path)
    train, val = losses(records), losses(records, "val_loss")
    assert train[1] > 10.0  # ln(50304) = 10.8 at init
    assert sum(train[s] for s in range(36, 41)) / 5 < train[1] - 2.0
    assert val[40] < val[0] - 2.0
    assert sorted(val) == [0, 20, 40]
    # each step's loss is read after the next step starts, yet logged once, in order, before the
    # validation that follows it
    order = [(r["step"], "val_loss" in r) for r in records]
    assert [s for s, is_val in order if not is_val] == list(range(1, 41))
    assert order.index((20, False)) < order.index((20, True)) < order.index((21, False))
    # and each step's time is its own (a step read late must not take the next step's time)
    step_ms = sorted(r["step_ms"] for r in records if "step_ms" in r)
    assert step_ms[0] > 0.1 * step_ms[len(step_ms) // 2]
    assert (tmp_path / "ckpt_000040.pt").exists() and (tmp_path / "run.json").exists()
    assert all("tokens" in r and "train_time_s" in r for r in records)


def test_resume_reproduces_an_uninterrupted_run_exactly(tmp_path):
    flags = [*SHORT, "--num_iterations", "8", "--val_loss_every", "2"]
    whole = tmp_path / "whole"
    main([*flags, "--save_every", "4", "--output_dir", str(whole)])
    # a run that crashed after step 6: its checkpoint at 4 and its log up to step 6
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    shutil.copy(whole / "ckpt_000004.pt", crashed)
    lines = (whole / "metrics.jsonl").read_text().splitlines()
    (crashed / "metrics.jsonl").write_text("".join(l + "\n" for l in lines if '"step": 7' not in l and '"step": 8' not in l))
    main([*flags, "--save_every", "4", "--output_dir", str(crashed), "--resume_from", "latest"])
    a, b = read_metrics(whole), read_metrics(crashed)
    assert [r["step"] for r in a] == [r["step"] for r in b]  # nothing logged twice, nothing lost
    assert losses(a) == losses(b)  # exact equality, not approximate
    assert losses(a, "val_loss") == losses(b, "val_loss")
    assert len(losses(b)) == 8


def test_gradient_accumulation_matches_a_bigger_batch(tmp_path):
    common = [*SHORT, "--num_iterations", "4", "--val_loss_every", "0", "--grad_clip", "0"]
    main([*common, "--batch_size", "8", "--output_dir", str(tmp_path / "big")])
    main([*common, "--batch_size", "4", "--total_batch_size", str(8 * 64), "--output_dir", str(tmp_path / "accum")])
    big, accum = losses(read_metrics(tmp_path / "big")), losses(read_metrics(tmp_path / "accum"))
    for step in big:
        assert accum[step] == pytest.approx(big[step], abs=1e-4)


def test_ddp_on_cpu_matches_one_process(tmp_path):
    """torchrun with 2 gloo ranks of batch 4 follows the 1-process batch-8 curve."""
    common = [*SHORT, "--num_iterations", "4", "--val_loss_every", "2"]
    run_trainer(*common, "--batch_size", "8", "--output_dir", str(tmp_path / "one"))
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
    run_trainer(*common, "--batch_size", "4", "--output_dir", str(tmp_path / "two"), launcher=torchrun)
    one, two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    for key in ("train_loss", "val_loss"):
        a, b = losses(one, key), losses(two, key)
        assert a.keys() == b.keys()
        for step in a:
            assert b[step] == pytest.approx(a[step], abs=1e-4)


def test_sampling_prints_text(tmp_path):
    proc = run_trainer(*SHORT, "--num_iterations", "2", "--sample_every", "2", "--sample_length", "8", "--output_dir", str(tmp_path))
    assert "sample at step 0:" in proc.stdout and "sample at step 2:" in proc.stdout


def test_run_sh_passes_flags_and_resumes(tmp_path):
    out = str(tmp_path / "run")
    flags = [*SHORT, "--num_iterations", "3", "--output_dir", out, "--sample_every", "0"]
    first = subprocess.run(["bash", str(REPO / "run.sh"), *flags], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    again = subprocess.run(["bash", str(REPO / "run.sh"), *flags[:-4], "--num_iterations", "5", "--output_dir", out, "--resume"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resumed from" in again.stdout
    assert sorted(losses(read_metrics(out))) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model", "d13"], "unknown model 'd13'; valid names: d12, d24"),
        (["--sequence_length", "2048"], "longer than the model's block_size 1024"),
        (["--total_batch_size", "1000"], "not a multiple of batch_size * sequence_length * world_size"),
        (["--input_bin", "/nonexistent/*.bin"], "matches no file"),
        (["--learning_rate_decay_frac", "2"], "must be in [0, 1]"),
        (["--batch_size", "0"], "--batch_size must be at least 1"),
        (["--n_head", "5"], "must be a multiple of n_head"),
        (["--resume_from", "latest"], "no checkpoint"),
        (["--warmup_iters", "500", "--num_iterations", "100"], "exceed --num_iterations"),
        (["--recompute", "1"], "--recompute 1 works through torch.compile: add --compile 1"),
        (["--learning_rate", "nan"], "argument --learning_rate: expected a finite number, not 'nan'"),
        (["--weight_decay", "inf"], "argument --weight_decay: expected a finite number, not 'inf'"),
        (["--learning_rate", "abc"], "argument --learning_rate: expected a finite number, not 'abc'"),
        (["--rope_theta", "0"], "rope_theta must be positive, not 0.0"),
        (["--seed", "-1"], "--seed must be between 0 and 2**32 - 1, not -1"),
        (["--seed", str(2**32)], "--seed must be between 0 and 2**32 - 1, not 4294967296"),
        (["--compile", "2"], "argument --compile: invalid choice: 2 (choose from 0, 1)"),
        (["--overwrite", "5"], "argument --overwrite: invalid choice: 5 (choose from 0, 1)"),
        (["--eval_only", "3", "--resume_from", "latest"], "argument --eval_only: invalid choice: 3 (choose from 0, 1)"),
        (["--sample_from", "/nonexistent.pt"], "--sample_from /nonexistent.pt: no such file"),
        (["--sample_from", "."], "--sample_from .: is a folder, not a checkpoint: give its ckpt_*.pt file, or latest with --output_dir ."),
        (["--sample_from", "latest"], "--sample_from latest: no checkpoint (ckpt_*.pt) in"),
        (["--cuda_graphs", "1"], "--cuda_graphs 1 works through torch.compile: add --compile 1"),
        (["--cuda_graphs", "1", "--compile", "1", "--device", "cpu"], "--cuda_graphs 1 needs a CUDA GPU"),
    ],
)
def test_bad_input_fails_clearly(tmp_path, flags, message):
    proc = run_trainer(*TINY, "--output_dir", str(tmp_path), *flags, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "flags, world_size, message",
    [
        (["--grad_accumulation_steps", "2"], 1, "cannot accumulate gradients"),
        ([], 2, "runs on one GPU only, not 2 processes"),
    ],
)
def test_cuda_graphs_refuse_what_they_would_get_wrong(monkeypatch, flags, world_size, message):
    import train_gpt2_mod as m

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine
    monkeypatch.setenv("WORLD_SIZE", str(world_size))
    args = m.build_parser().parse_args([*TINY, "--compile", "1", "--cuda_graphs", "1", *flags])
    with pytest.raises(m.UsageError, match=message):
        m.check_args(args)
    monkeypatch.setenv("WORLD_SIZE", "1")
    m.check_args(m.build_parser().parse_args([*TINY, "--compile", "1", "--cuda_graphs", "1"]))  # one GPU, no accumulation: accepted


def test_corrupt_shard_and_existing_run_fail_clearly(tmp_path):
    bad = tmp_path / "bad_000001.bin"
    bad.write_bytes(b"\0" * 2000)
    proc = run_trainer(*TINY, "--input_bin", str(bad), "--output_dir", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and f"{bad} is not an llm.c shard" in proc.stderr
    main([*SHORT, "--num_iterations", "4", "--output_dir", str(tmp_path / "run")])
    proc = run_trainer(*SHORT, "--num_iterations", "2", "--output_dir", str(tmp_path / "run"), check=False)
    assert proc.returncode == 2 and "already holds a run" in proc.stderr
    assert (tmp_path / "run" / "ckpt_000004.pt").exists()  # the refused run touched nothing


def test_overwrite_clears_the_old_runs_checkpoints(tmp_path):
    main([*SHORT, "--num_iterations", "4", "--output_dir", str(tmp_path)])
    main([*SHORT, "--num_iterations", "2", "--output_dir", str(tmp_path), "--overwrite", "1"])
    assert sorted(p.name for p in tmp_path.glob("ckpt_*.pt")) == ["ckpt_000002.pt"]  # "latest" is this run's
    assert max(losses(read_metrics(tmp_path))) == 2


def test_validation_scores_exactly_val_tokens(tmp_path):
    main([*TINY, "--warmup_iters", "1", "--num_iterations", "1", "--val_tokens", "4096", "--output_dir", str(tmp_path)])
    assert {r["val_tokens"] for r in read_metrics(tmp_path) if "val_tokens" in r} == {4096}  # not 4096 - 64


def test_resuming_a_finished_run_keeps_its_summary(tmp_path):
    import json

    flags = [*SHORT, "--num_iterations", "2", "--output_dir", str(tmp_path)]
    main(flags)
    summary = json.loads((tmp_path / "run.json").read_text())["summary"]
    main([*flags, "--resume_from", "latest"])  # nothing left to train: it validates and ends
    assert json.loads((tmp_path / "run.json").read_text())["summary"] == summary


def test_train_runs_on_parsed_arguments_alone(tmp_path):
    from train_gpt2_mod import build_parser, train

    train(build_parser().parse_args([*SHORT, "--num_iterations", "2", "--output_dir", str(tmp_path)]))
    assert sorted(losses(read_metrics(tmp_path))) == [1, 2]
