"""
Tokenize text into llm.c shards with GPT-2's BPE, in parallel processes.

Each document (a whole .txt file, one line of a .jsonl file, one row of a .parquet file) becomes
<|endoftext|> followed by its tokens. Train shards are NAME_train_000001.bin, ... (at most
--shard_size tokens each); documents given with --val go to NAME_val_000000.bin, the FineWeb layout.

    python data/make_shards.py --name mytext --out_dir data/mytext --val held_out.txt -- corpus/*.txt
    python data/make_shards.py --name web --out_dir data/web --text_field text -- dump.jsonl
"""

import argparse
import glob
import json
import multiprocessing as mp
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from train_gpt2_mod import GPT2_EOT, gpt2_encoding, write_shard  # noqa: E402

try:
    from tqdm import tqdm
except ImportError:  # progress without tqdm: a line per shard
    tqdm = None


def expand(patterns):
    files = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if not found:
            sys.exit(f"error: {pattern!r} matches no file")
        files.extend(found)
    return files


def documents(files, text_field):
    """Yield the text of each document in the files, in order."""
    for path in files:
        suffix = Path(path).suffix
        if suffix == ".jsonl":
            with open(path, encoding="utf-8") as f:
                for line_number, line in enumerate(f, 1):
                    if line.strip():
                        record = json.loads(line)
                        if text_field not in record:
                            sys.exit(f"error: {path}:{line_number} has no field {text_field!r} (set --text_field)")
                        yield record[text_field]
        elif suffix == ".parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError:
                sys.exit("error: reading parquet needs pyarrow: pip install pyarrow")
            table = pq.ParquetFile(path)
            if text_field not in table.schema_arrow.names:
                sys.exit(f"error: {path} has no column {text_field!r} (set --text_field)")
            for batch in table.iter_batches(columns=[text_field]):
                yield from batch.column(0).to_pylist()
        else:
            yield Path(path).read_text(encoding="utf-8")


def init_worker():
    global encoding
    encoding = gpt2_encoding()


def encode(text):
    return np.array([GPT2_EOT] + encoding.encode_ordinary(text), dtype=np.uint16)


class ShardWriter:
    """Collects documents in order and writes a shard each time shard_size tokens are in hand
    (shard_size None: one shard for everything)."""

    def __init__(self, out_dir, name, split, first_index, shard_size):
        self.out_dir, self.name, self.split, self.index, self.shard_size = out_dir, name, split, first_index, shard_size
        self.pending, self.filled, self.written = [], 0, []

    def add(self, tokens):
        self.pending.append(tokens)
        self.filled += tokens.size
        while self.shard_size and self.filled >= self.shard_size:
            self.flush()

    def flush(self):
        if not self.filled:
            return
        tokens = np.concatenate(self.pending)
        shard, rest = tokens[: self.shard_size], tokens[self.shard_size or tokens.size :]
        path = Path(self.out_dir) / f"{self.name}_{self.split}_{self.index:06d}.bin"
        write_shard(path, shard)
        self.written.append((path, shard.size))
        self.index, self.pending, self.filled = self.index + 1, [rest], rest.size


def tokenize_split(files, writer, pool, text_field, label):
    total = len(files) if all(Path(f).suffix not in (".jsonl", ".parquet") for f in files) else None
    progress = tqdm(total=total, unit="doc", desc=label) if tqdm else None
    count = 0
    for tokens in pool.imap(encode, documents(files, text_field), chunksize=16):
        writer.add(tokens)
        count += tokens.size
        if progress is not None:
            progress.update(1)
            progress.set_postfix(tokens=f"{count:,}")
    writer.flush()
    if progress is not None:
        progress.close()
    for path, ntok in writer.written:
        print(f"wrote {path} ({ntok:,} tokens)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="training text: .txt, .jsonl or .parquet files or globs")
    p.add_argument("--val", nargs="*", default=[], help="documents held out for the val shard")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--name", required=True, help="shard file prefix")
    p.add_argument("--shard_size", type=int, default=100_000_000, help="tokens per train shard")
    p.add_argument("--text_field", default="text", help="field (jsonl) or column (parquet) holding the text")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="tokenizing processes")
    args = p.parse_args()
    if args.shard_size < 1 or args.workers < 1:
        sys.exit("error: --shard_size and --workers must be at least 1")
    train_files, val_files = expand(args.inputs), expand(args.val)
    overlap = set(map(os.path.abspath, train_files)) & set(map(os.path.abspath, val_files))
    if overlap:
        sys.exit(f"error: these files are in both the train and val inputs: {', '.join(sorted(overlap))}")
    os.makedirs(args.out_dir, exist_ok=True)
    with mp.Pool(args.workers, initializer=init_worker) as pool:
        if val_files:
            # one val shard, however large: the trainer reads its first --val_tokens
            tokenize_split(val_files, ShardWriter(args.out_dir, args.name, "val", 0, None), pool, args.text_field, "val")
        tokenize_split(train_files, ShardWriter(args.out_dir, args.name, "train", 1, args.shard_size), pool, args.text_field, "train")


if __name__ == "__main__":
    main()
