"""
Download pre-tokenized FineWeb-10B (GPT-2 tokens, llm.c shards) from the Hugging Face hub.

    python data/cached_fineweb10B.py 8    # the val shard and the first 8 train shards (800M tokens)

Shards go to data/fineweb10B/; files already there (and whole) are skipped.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from train_gpt2_mod import UsageError, shard_token_count, usage_error  # noqa: E402

REPO_ID = "kjj0/fineweb10B-gpt2"
NUM_TRAIN_SHARDS = 103  # fineweb_train_000001.bin ... _000103.bin, 100M tokens each
LOCAL_DIR = Path(__file__).resolve().parent / "fineweb10B"


def is_complete(path):
    try:
        shard_token_count(path)
        return True
    except UsageError:
        return False


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("num_train_shards", type=int, nargs="?", default=NUM_TRAIN_SHARDS, help=f"train shards to fetch (1 to {NUM_TRAIN_SHARDS})")
    args = p.parse_args()
    if not 1 <= args.num_train_shards <= NUM_TRAIN_SHARDS:
        usage_error(f"num_train_shards must be between 1 and {NUM_TRAIN_SHARDS}, not {args.num_train_shards}")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        sys.exit("error: this needs huggingface_hub: pip install huggingface_hub")
    names = ["fineweb_val_000000.bin"] + [f"fineweb_train_{i:06d}.bin" for i in range(1, args.num_train_shards + 1)]
    for i, name in enumerate(names, 1):
        path = LOCAL_DIR / name
        if path.exists() and is_complete(path):
            print(f"[{i}/{len(names)}] {name}: already here")
            continue
        print(f"[{i}/{len(names)}] {name}: downloading", flush=True)
        try:
            hf_hub_download(repo_id=REPO_ID, filename=name, repo_type="dataset", local_dir=LOCAL_DIR)
        except Exception as e:  # offline, hub down, no disk: say which file and why
            sys.exit(f"error: could not download {name} from the Hugging Face hub ({REPO_ID}): {type(e).__name__}: {e}")
        if not is_complete(path):
            sys.exit(f"error: {path} arrived but is not a whole shard; delete it and run again")
    print(f"done: {len(names)} shards in {LOCAL_DIR}")


if __name__ == "__main__":
    main()
