#!/usr/bin/env bash
# py-spy for the GPU machine (no network there): its wheel into .gpu-tools/ (ignored by git), from the
# project root. Carry .gpu-tools in call 1 beside .gpu-kernels-a (about 51 MiB together).
set -euo pipefail
rm -rf .gpu-tools && mkdir .gpu-tools
python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux2014_x86_64 -d .gpu-tools py-spy==0.4.3
grep -qx "/.gpu-tools/" .git/info/exclude || echo "/.gpu-tools/" >> .git/info/exclude
du -sh .gpu-tools .gpu-kernels-a
