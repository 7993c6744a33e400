import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from train_gpt2_mod import (
    GPT2_EOT,
    SHARD_HEADER_BYTES,
    DistributedTokenLoader,
    UsageError,
    find_shards,
    gpt2_encoding,
    read_shard,
    read_val_tokens,
    shard_token_count,
    write_shard,
)


def test_shard_round_trip(tmp_path):
    tokens = np.arange(1000) % 50257
    write_shard(tmp_path / "a.bin", tokens)
    assert shard_token_count(tmp_path / "a.bin") == 1000
    assert (read_shard(tmp_path / "a.bin") == tokens).all()
    header = np.fromfile(tmp_path / "a.bin", dtype=np.int32, count=256)
    assert list(header[:3]) == [20240520, 1, 1000]
    assert not list(tmp_path.glob("*.tmp"))


def corrupt(path, offset, value):
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 4] = np.int32(value).tobytes()
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: corrupt(p, 0, 12345), "magic number 12345"),
        (lambda p: corrupt(p, 4, 7), "version 7"),
        (lambda p: p.write_bytes(p.read_bytes()[:-10]), "truncated"),
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "shorter than the 1024-byte header"),
        (lambda p: p.write_bytes(p.read_bytes() + b"xx"), "longer than its header says"),
    ],
)
def test_bad_shards_are_named(tmp_path, damage, message):
    path = tmp_path / "bad.bin"
    write_shard(path, np.arange(100))
    damage(path)
    with pytest.raises(UsageError, match=message) as e:
        shard_token_count(path)
    assert str(path) in str(e.value)


def test_missing_files(tmp_path):
    with pytest.raises(UsageError, match="matches no file"):
        find_shards(str(tmp_path / "nothing_*.bin"), "--input_bin")
    with pytest.raises(UsageError, match="cannot read shard"):
        shard_token_count(tmp_path / "gone.bin")


def make_shards(tmp_path, sizes):
    files, start = [], 0
    for i, n in enumerate(sizes):
        path = tmp_path / f"train_{i:06d}.bin"
        write_shard(path, np.arange(start, start + n))
        files.append(str(path))
        start += n
    return files


def test_ranks_read_contiguous_slices_of_one_step(tmp_path):
    files = make_shards(tmp_path, [1000])
    single = DistributedTokenLoader(files, B=4, T=8, rank=0, world_size=1)
    ranks = [DistributedTokenLoader(files, B=2, T=8, rank=r, world_size=2) for r in range(2)]
    for _ in range(3):
        x, y = single.next_batch()
        parts = [loader.next_batch() for loader in ranks]
        assert (np.concatenate([p[0].numpy() for p in parts]) == x.numpy()).all()
        assert (y == x + 1).all()  # targets are the next tokens
    assert single.state_dict() == ranks[0].state_dict() == ranks[1].state_dict() == {"shard": 0, "position": 96}


def test_loader_moves_to_next_shard_and_cycles(tmp_path):
    files = make_shards(tmp_path, [50, 40])
    loader = DistributedTokenLoader(files, B=1, T=16, rank=0, world_size=1)
    firsts = [loader.next_batch()[0][0, 0].item() for _ in range(6)]
    # shard 0 holds 3 batches of 16 (+1 target), shard 1 holds 2, then it starts over
    assert firsts == [0, 16, 32, 50, 66, 0]


def test_loader_state_resumes_the_same_batches(tmp_path):
    files = make_shards(tmp_path, [300, 300])
    a = DistributedTokenLoader(files, B=2, T=10, rank=1, world_size=2)
    for _ in range(9):
        a.next_batch()
    b = DistributedTokenLoader(files, B=2, T=10, rank=1, world_size=2)
    b.load_state_dict(a.state_dict())
    for _ in range(5):
        assert (a.next_batch()[0] == b.next_batch()[0]).all()


def test_shard_smaller_than_a_step_is_an_error(tmp_path):
    files = make_shards(tmp_path, [100])
    with pytest.raises(UsageError, match="fewer than one step needs"):
        DistributedTokenLoader(files, B=4, T=32, rank=0, world_size=1)


def test_read_val_tokens_spans_shards(tmp_path):
    files = make_shards(tmp_path, [100, 100])
    assert (read_val_tokens(files, 150) == np.arange(150)).all()
    assert read_val_tokens(files, 10**9).size == 200


def test_gpt2_encoding_matches_gpt2():
    enc = gpt2_encoding()
    assert enc.encode_ordinary("Hello world") == [15496, 995]
    assert enc.encode_ordinary(" the") == [262]
    assert enc.n_vocab == 50257 and enc.eot_token == GPT2_EOT
    digest = hashlib.sha256((REPO / "data" / "gpt2.tiktoken").read_bytes()).hexdigest()
    assert digest == "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"


def test_bundled_shakespeare_shards():
    train = find_shards(str(REPO / "data/shakespeare/shakespeare_train_*.bin"), "--input_bin")
    val = find_shards(str(REPO / "data/shakespeare/shakespeare_val_*.bin"), "--input_val_bin")
    ntrain, nval = sum(map(shard_token_count, train)), sum(map(shard_token_count, val))
    assert ntrain > 1_000_000 and nval > 100_000
    text = gpt2_encoding().decode(read_shard(val[0])[:2000].tolist())
    assert "<|endoftext|>" in text and "MACBETH" in text.upper()


def test_make_shards_script(tmp_path):
    (tmp_path / "a.txt").write_text("To be, or not to be")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "Hello world"}) + "\n" + json.dumps({"text": " the end"}) + "\n")
    (tmp_path / "v.txt").write_text("held out")
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "data/make_shards.py"), "--name", "t", "--out_dir", str(out), "--workers", "2", "--shard_size", "8", "--val", str(tmp_path / "v.txt"), "--", str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl")]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    enc = gpt2_encoding()
    train = sorted(out.glob("t_train_*.bin"))
    assert train[0].name == "t_train_000001.bin"
    tokens = np.concatenate([read_shard(p) for p in train]).tolist()
    expected = [GPT2_EOT] + enc.encode_ordinary("To be, or not to be") + [GPT2_EOT, 15496, 995] + [GPT2_EOT, 262, 886]
    assert tokens == expected
    assert all(shard_token_count(p) <= 8 for p in train)
    assert read_shard(out / "t_val_000000.bin").tolist() == [GPT2_EOT] + enc.encode_ordinary("held out")
    assert SHARD_HEADER_BYTES == 1024


def test_fineweb_download_refuses_a_bad_shard_count():
    proc = subprocess.run([sys.executable, str(REPO / "data" / "cached_fineweb10B.py"), "0"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "num_train_shards must be between 1 and" in proc.stderr
