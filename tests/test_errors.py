"""Bad input ends in one line and exit code 2, before any work where possible: output dirs, shards,
checkpoints, flags, run.sh, make_shards.py."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, SHORT_TRAIN, TINY, run_trainer
from train_gpt2_mod import DistributedTokenLoader, main, write_shard


def assert_one_line_error(proc, message, code=2):
    assert proc.returncode == code, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr.strip().splitlines()[-1]


def test_an_output_dir_that_is_a_file(tmp_path):
    (tmp_path / "out").write_text("a file")
    proc = run_trainer(*TINY, "--output_dir", str(tmp_path / "out"), check=False)
    assert_one_line_error(proc, "cannot write to --output_dir")
    assert "model d12" not in proc.stdout  # refused before the model was built


def test_a_read_only_output_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        proc = run_trainer(*TINY, "--output_dir", str(ro / "run"), check=False)
        assert_one_line_error(proc, "Read-only file system")
    finally:
        subprocess.run(["umount", "--lazy", str(ro)])


def test_token_ids_beyond_the_vocabulary_name_the_shard(tmp_path):
    write_shard(tmp_path / "bad_000001.bin", np.full(5000, 60000))
    proc = run_trainer(*TINY, "--input_bin", str(tmp_path / "bad_*.bin"), "--output_dir", str(tmp_path / "o"), check=False)
    assert_one_line_error(proc, f"{tmp_path / 'bad_000001.bin'} holds token id 60000, beyond the model's vocab_size 50304")


def test_a_remainder_shard_shorter_than_a_step_is_skipped(tmp_path, capsys):
    write_shard(tmp_path / "t_000001.bin", np.arange(1000))
    write_shard(tmp_path / "t_000002.bin", np.arange(100))  # the dataset's last, short shard
    loader = DistributedTokenLoader([str(tmp_path / "t_000001.bin"), str(tmp_path / "t_000002.bin")], B=4, T=32, rank=0, world_size=1)
    assert loader.files == [str(tmp_path / "t_000001.bin")]
    assert "skipping" in capsys.readouterr().out


@pytest.mark.parametrize("content, reason", [(b"", "the file is empty"), (bytes(range(256)) * 8, "not a PyTorch file")], ids=["empty", "random"])
def test_an_unreadable_checkpoint_names_the_one_before_it(tmp_path, content, reason):
    main([*SHORT_TRAIN, "--num_iterations", "2", "--save_every", "1", "--output_dir", str(tmp_path)])
    (tmp_path / "ckpt_000002.pt").write_bytes(content)
    proc = run_trainer(*SHORT_TRAIN, "--num_iterations", "3", "--output_dir", str(tmp_path), "--resume_from", "latest", check=False)
    assert_one_line_error(proc, "ckpt_000002.pt is not a readable checkpoint of this trainer")
    assert reason in proc.stderr and "_use_new_zipfile_serialization" not in proc.stderr
    assert f"the one before it, {tmp_path / 'ckpt_000001.pt'}, can be resumed" in proc.stderr


def test_abbreviated_flags_are_refused_and_help_shows_no_none(tmp_path):
    proc = run_trainer(*TINY, "--num_iter", "3", "--output_dir", str(tmp_path), check=False)
    assert proc.returncode == 2 and "unrecognized arguments: --num_iter" in proc.stderr
    help_text = run_trainer("--help").stdout
    assert "(default: None)" not in help_text and "(default: from --model)" in help_text


def test_run_sh_ends_with_the_trainers_error(tmp_path):
    for nproc in ("1", "2"):
        env = dict(os.environ, NPROC=nproc, PYTHON=sys.executable)
        proc = subprocess.run(["bash", str(REPO / "run.sh"), "--model", "d13", "--output_dir", str(tmp_path)], capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown model 'd13'")
        if nproc == "1":
            assert "Traceback" not in proc.stderr and "ChildFailedError" not in proc.stderr


def test_run_sh_banner_tells_the_defaults_apart_from_the_flags(tmp_path):
    flags = [*SHORT_TRAIN, "--num_iterations", "2", "--output_dir", str(tmp_path)]
    proc = subprocess.run(["bash", str(REPO / "run.sh"), *flags], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "your flags override these" in proc.stdout and "(2 layers, 2 heads, 64 wide)" in proc.stdout


def test_a_window_that_holds_the_whole_sequence_is_named(tmp_path):
    proc = run_trainer(*SHORT_TRAIN, "--sliding_window", "64", "--num_iterations", "2", "--output_dir", str(tmp_path))
    assert "the same model as without the window" in proc.stdout


def make_shards(tmp_path, *inputs, flags=(), prelude=""):
    """Run data/make_shards.py (prelude: Python run first, in the same process); a hang fails."""
    argv = ["--name", "t", "--out_dir", str(tmp_path / "out"), "--workers", "2", *flags, "--", *map(str, inputs)]
    code = f"import runpy, sys; {prelude or 'pass'}; sys.argv = ['make_shards.py', *{argv!r}]; runpy.run_path({str(REPO / 'data/make_shards.py')!r}, run_name='__main__')"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("a.jsonl", json.dumps({"body": "x"}) + "\n", "a.jsonl:1 has no field 'text'"),
        ("b.jsonl", '{"text": "fine"}\n{"text": \n', "b.jsonl:2 is not a JSON record"),
        ("c.jsonl", json.dumps({"text": 5}) + "\n", "c.jsonl:1: the text is of type int, not a string"),
        ("d.txt", bytes(range(256)), "d.txt is not UTF-8 text"),
        ("e.txt", "", "the train inputs hold no text"),
    ],
    ids=["no-field", "broken-json", "not-a-string", "binary", "empty"],
)
def test_make_shards_bad_input_fails_clearly(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    proc = make_shards(tmp_path, path)
    assert_one_line_error(proc, message)
    assert not list((tmp_path / "out").glob("*.bin"))


def test_make_shards_parquet_without_pyarrow(tmp_path):
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    proc = make_shards(tmp_path, tmp_path / "x.parquet", prelude="sys.modules['pyarrow'] = None")
    assert_one_line_error(proc, "reading parquet needs pyarrow: pip install pyarrow")


def test_make_shards_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["Hello world", "", " the end"]}), tmp_path / "x.parquet")
    assert make_shards(tmp_path, tmp_path / "x.parquet").returncode == 0
    from train_gpt2_mod import read_shard

    assert read_shard(tmp_path / "out" / "t_train_000001.bin").tolist() == [50256, 15496, 995, 50256, 262, 886]


def test_make_shards_replaces_an_old_set_only_when_asked(tmp_path):
    (tmp_path / "a.txt").write_text("To be, or not to be, that is the question")
    assert make_shards(tmp_path, tmp_path / "a.txt", flags=("--shard_size", "4")).returncode == 0
    old = sorted(p.name for p in (tmp_path / "out").glob("t_train_*.bin"))
    assert len(old) > 2
    assert_one_line_error(make_shards(tmp_path, tmp_path / "a.txt"), "already holds")
    assert sorted(p.name for p in (tmp_path / "out").glob("t_train_*.bin")) == old
    assert make_shards(tmp_path, tmp_path / "a.txt", flags=("--overwrite", "1")).returncode == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["t_train_000001.bin"]  # no old shard mixed in
