"""
Tokenize text into llm.c shards with GPT-2's BPE, in parallel processes.

Each document (a whole .txt file, one line of a .jsonl file, one row of a .parquet file) becomes
<|endoftext|> followed by its tokens. Train shards are NAME_train_000001.bin, ... (at most
--shard_size tokens each); documents given with --val go to NAME_val_000000.bin, the FineWeb layout.

    python data/make_shards.py --name mytext --out_dir data/mytext --val held_out.txt -- corpus/*.txt
    python data/make_shards.py --name web --out_dir data/web --text_field text -- dump.jsonl

Shards of the same --name already in --out_dir are replaced only with --overwrite 1. Reading
.parquet needs pyarrow.
"""

import argparse
import glob
import importlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from train_gpt2_mod import GPT2_EOT, UsageError, gpt2_encoding, shard_token_count, write_shard  # noqa: E402

try:
    from tqdm import tqdm
except ImportError:  # progress without tqdm: a line per shard
    tqdm = None


class InputError(Exception):
    """Bad input, said in one line (exit code 2). An Exception, not SystemExit: raised inside the
    generator that pool.imap consumes, it reaches the main process instead of ending a thread."""


def expand(patterns):
    files = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if not found:
            raise InputError(f"{pattern!r} matches no file")
        files.extend(found)
    return files


def jsonl_texts(path, text_field):
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{line_number} is not a JSON record ({e.msg})") from None
            if not isinstance(record, dict) or text_field not in record:
                raise InputError(f"{path}:{line_number} has no field {text_field!r} (set --text_field)")
            yield f"{path}:{line_number}", record[text_field]


def parquet_texts(path, text_field):
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as e:
        raise InputError(f"{path} is not a parquet file ({e})") from None
    if text_field not in table.schema_arrow.names:
        raise InputError(f"{path} has no column {text_field!r} (set --text_field)")
    row = 0
    for batch in table.iter_batches(columns=[text_field]):
        for text in batch.column(0).to_pylist():
            row += 1
            yield f"{path} row {row}", text


def documents(files, text_field):
    """Yield the text of each non-empty document in the files, in order; input that is not text
    (binary files, non-string fields) is an InputError naming the file."""
    for path in files:
        suffix = Path(path).suffix
        try:
            if suffix == ".jsonl":
                texts = jsonl_texts(path, text_field)
            elif suffix == ".parquet":
                texts = parquet_texts(path, text_field)
            else:
                texts = [(path, Path(path).read_text(encoding="utf-8"))]
            for where, text in texts:
                if not isinstance(text, str):
                    raise InputError(f"{where}: the text is of type {type(text).__name__}, not a string")
                if text:
                    yield text
        except UnicodeDecodeError:
            raise InputError(f"{path} is not UTF-8 text (a binary file?)") from None
        except OSError as e:
            raise InputError(f"cannot read {path}: {e.strerror}") from None


def init_worker():
    global encoding
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
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
    try:
        for tokens in pool.imap(encode, documents(files, text_field), chunksize=16):
            writer.add(tokens)
            count += tokens.size
            if progress is not None:
                progress.update(1)
                progress.set_postfix(tokens=f"{count:,}")
        writer.flush()
    finally:  # the bar's line ends before any error is printed
        if progress is not None:
            progress.close()
    if not writer.written:
        raise InputError(f"the {label} inputs hold no text: {', '.join(files)}")


def existing_shards(out_dir, name):
    return sorted(Path(out_dir).glob(f"{name}_train_*.bin")) + sorted(Path(out_dir).glob(f"{name}_val_*.bin"))


def make_shards(args, train_files, val_files):
    """Tokenize into a staging folder, then move the shards into --out_dir and remove the old
    shards of this --name that the new set does not replace: the folder never holds a mix of two
    runs' shards, nor a half-made set."""
    out_dir = Path(args.out_dir)
    staging = out_dir / f".{args.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)  # left by a run that was killed
    staging.mkdir(parents=True)
    try:
        with mp.Pool(args.workers, initializer=init_worker) as pool:
            if val_files:
                # one val shard, however large: the trainer reads its first --val_tokens
                tokenize_split(val_files, ShardWriter(staging, args.name, "val", 0, None), pool, args.text_field, "val")
            tokenize_split(train_files, ShardWriter(staging, args.name, "train", 1, args.shard_size), pool, args.text_field, "train")
        new = sorted(staging.iterdir())
        for path in existing_shards(out_dir, args.name):
            if not (staging / path.name).exists():
                print(f"removing {path}, an old shard this run does not replace")
                path.unlink()
        for path in new:
            os.replace(path, out_dir / path.name)
            print(f"wrote {out_dir / path.name} ({shard_token_count(out_dir / path.name):,} tokens)")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("inputs", nargs="+", help="training text: .txt, .jsonl or .parquet files or globs")
    p.add_argument("--val", nargs="*", default=[], help="documents held out for the val shard")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--name", required=True, help="shard file prefix")
    p.add_argument("--shard_size", type=int, default=100_000_000, help="tokens per train shard")
    p.add_argument("--text_field", default="text", help="field (jsonl) or column (parquet) holding the text")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="tokenizing processes")
    p.add_argument("--overwrite", type=int, default=0, help="1: replace the shards of this --name already in --out_dir")
    args = p.parse_args()
    try:
        if args.shard_size < 1 or args.workers < 1:
            raise InputError("--shard_size and --workers must be at least 1")
        train_files, val_files = expand(args.inputs), expand(args.val)
        overlap = set(map(os.path.abspath, train_files)) & set(map(os.path.abspath, val_files))
        if overlap:
            raise InputError(f"these files are in both the train and val inputs: {', '.join(sorted(overlap))}")
        if any(Path(f).suffix == ".parquet" for f in train_files + val_files):
            try:
                importlib.import_module("pyarrow.parquet")
            except ImportError:
                raise InputError("reading parquet needs pyarrow: pip install pyarrow") from None
        old = existing_shards(args.out_dir, args.name)
        if old and not args.overwrite:
            raise InputError(f"{args.out_dir} already holds {len(old)} shards named {args.name}_*: replace them with --overwrite 1, or choose another --name or --out_dir")
        make_shards(args, train_files, val_files)
    except (InputError, UsageError) as e:  # UsageError: write_shard on a full disk
        print(f"error: {e}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2))
    except KeyboardInterrupt:
        print("interrupted: no shard was changed", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
