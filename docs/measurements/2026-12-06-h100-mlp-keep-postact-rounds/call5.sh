# Call 5 as run (written on the machine from the run command, after call 4, with no carry).
# Its first try was `LIMIT=330 . tools/device_session.sh`: bash drops an assignment placed before
# `.` once the file is read, so LIMIT was unset, `left` failed under `set -u` and every bench
# skipped itself at 0 s (7 s of device time). Fixed in tools/device_session.sh the same day; the
# line below is the second try, which ran.
set -u
FLAGS="--batch_size 32 --sequence_length 1024 --compile 1 --cuda_graphs 1"
LIMIT=330; . tools/device_session.sh
kernels_path
bench /tmp/new new_4 25 d12
bench /tmp/new mla_new_2 25 d12_flash_mla
bench . mla_before_2 25 d12_flash_mla
pack 5
echo "call 5 took $(elapsed) s"
