# Call 6 as run (written on the machine from the run command, carrying .anchors): nanoGPT once more
# beside the new tree, and the window config on the new tree.
set -u
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
LIMIT=300; . tools/device_session.sh
kernels_path
cp -r .anchors /tmp/new/ 2>/dev/null
bench /tmp/new anchor_new_5 25 d12 --nanogpt .anchors/nanoGPT
bench /tmp/new window_new_1 25 d12_sliding_window
pack 6
echo "call 6 took $(elapsed) s"
