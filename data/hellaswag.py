"""
Download the HellaSwag validation set (10,042 examples, jsonl) into data/hellaswag/, for
train_gpt2_mod.py --hellaswag_every N or --eval_only 1.

    python data/hellaswag.py
"""

import argparse
import sys
import urllib.request
from pathlib import Path

URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl"
DEST = Path(__file__).resolve().parent / "hellaswag" / "hellaswag_val.jsonl"
NUM_EXAMPLES = 10042


def main():
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()  # only --help
    if DEST.exists() and sum(1 for line in DEST.open() if line.strip()) == NUM_EXAMPLES:
        print(f"{DEST}: already here")
        return
    DEST.parent.mkdir(parents=True, exist_ok=True)
    tmp = DEST.with_suffix(".tmp")
    try:
        with urllib.request.urlopen(URL, timeout=30) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                print(f"\r{DEST.name}: {done / 2**20:.1f} MiB" + (f" of {total / 2**20:.1f}" if total else ""), end="", flush=True)
        print()
    except OSError as e:  # offline, DNS, HTTP errors
        tmp.unlink(missing_ok=True)
        sys.exit(f"error: could not download {URL}: {e}\n(offline? copy hellaswag_val.jsonl into {DEST.parent} by hand)")
    count = sum(1 for line in tmp.open() if line.strip())
    if count != NUM_EXAMPLES:
        tmp.unlink()
        sys.exit(f"error: the download has {count} examples, not {NUM_EXAMPLES}; try again")
    tmp.replace(DEST)
    print(f"wrote {DEST} ({count:,} examples)")


if __name__ == "__main__":
    main()
