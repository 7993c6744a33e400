#!/usr/bin/env bash
# Stages nanoGPT's train.py, model.py and configurator.py (and its LICENSE) into .anchors/nanoGPT/,
# a folder .git/info/exclude ignores, for `tools/bench_train.py --nanogpt` on the GPU machine, from
# a fetched mirror of github.com/karpathy/nanoGPT (the search tool's `fetch github:karpathy/nanoGPT`).
# Run from the project root.
set -eu
MIRROR=${1:-/work/.mirror/karpathy+nanoGPT/repo}
grep -qx "/.anchors/" .git/info/exclude || echo "/.anchors/" >> .git/info/exclude
rm -rf .anchors/nanoGPT && mkdir -p .anchors/nanoGPT
git --git-dir="$MIRROR" archive HEAD train.py model.py configurator.py LICENSE | tar -x -C .anchors/nanoGPT
git --git-dir="$MIRROR" rev-parse HEAD > .anchors/nanoGPT/COMMIT
echo "staged nanoGPT $(cat .anchors/nanoGPT/COMMIT) in .anchors/nanoGPT"
