#!/usr/bin/env bash
# Written after calls 2 and 3 (see README.md, "After calls 2 and 3"), for a fresh machine: the rope
# change alone on the trainer as it is (qkv_rope_alone.diff: qkv_rope_epilogue.diff without the MLP
# change, with the vectors passed as (1, length), which quack's dense calls take), against default.
#     bash docs/prepared/2026-12-06-qkv-rope-epilogue/gpu_session.sh 1      # carry .gpu-kernels-a, .anchors
#     bash docs/prepared/2026-12-06-qkv-rope-epilogue/call4.sh               # carry .gpu-kernels-b, .anchors, at once
set -u
HERE=docs/prepared/2026-12-06-qkv-rope-epilogue
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
. tools/device_session.sh
install_kernels || exit 1
rm -rf /tmp/ropealone && cp -r . /tmp/ropealone && patch -s -d /tmp/ropealone -p1 < $HERE/qkv_rope_alone.diff || exit 1
bench . default_4 25 d12       # compiles from empty caches: not a round
bench /tmp/ropealone ropealone_1 25 d12
bench . default_5 25 d12
bench . default_6 25 d12
bench /tmp/ropealone ropealone_2 25 d12
bench /tmp/ropealone ropealone_3 25 d12
bench . default_7 25 d12
bench /tmp/ropealone ropealone_4 25 d12
pack 4
echo "call 4 took $(elapsed) s"
