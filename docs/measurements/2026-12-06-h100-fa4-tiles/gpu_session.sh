#!/usr/bin/env bash
# The device calls of PLAN.md beside this file, from the project root, one right after the other:
#     bash docs/measurements/2026-12-06-h100-fa4-tiles/gpu_session.sh 1   # carry .gpu-kernels-a
#     ... 2   # carry .gpu-kernels-b, at once
set -u
FLAGS=""
. tools/device_session.sh
case "${1:-}" in
1)  stage_kernels
    card_at_rest ;;
2)  install_kernels || exit 1
    (cd tools && timeout $(( $(left) - 10 )) python3 bench_fa4_tiles.py --json "$RESULTS/tiles.json" | tee "$RESULTS/tiles.txt")
    echo "tiles ended at $(elapsed) s"
    pack 2 ;;
esac
# Calls 3 and 4 ran on the same machine, right after call 2, typed as one line each (as they ran):
# more forward candidates, then more backward ones, at 50 and 40 repetitions. Their candidates
# have since joined the lists in tools/bench_fa4_tiles.py.
# 3)  cd tools && . ../tools/device_session.sh >/dev/null; kernels_path; python3 -W ignore -c "
#     import bench_fa4_tiles as b, sys
#     b.BACKWARD_CANDIDATES={}
#     b.FORWARD_CANDIDATES={'128x128 RS':(128,128,True,True),'128x128 RS, no overlap':(128,128,True,False),'128x112 RS':(128,112,True,True),'128x144 RS':(128,144,True,True),'128x160 RS':(128,160,True,True),'128x96 RS':(128,96,True,True),'128x192 RS':(128,192,True,True),'128x128 again':(128,128,False,True), '192x128 own again':(192,128,False,True)}
#     sys.argv=['x','--reps','50','--json','/tmp/t2.json']; b.main()" 2>&1 | grep "^|"; cp /tmp/t2.json $OUT/
# 4)  the same, with
#     s={'dQ_single_wg':True}
#     b.FORWARD_CANDIDATES={}
#     b.BACKWARD_CANDIDATES={'64x160 1wg':((64,160,2,2,2,True,False,False,1,2,1),s),'64x192 1wg':((64,192,2,2,2,True,False,False,1,2,1),s),'64x128 dO1 PdS1 1wg':((64,128,2,1,1,True,False,False,1,2,1),s),'64x128 PdS1 1wg':((64,128,2,2,1,True,False,False,1,2,1),s),'64x112 1wg':((64,112,2,2,2,True,False,False,1,2,1),s),'128x128 dO1 PdS1':((128,128,2,1,1,True,False,False,1,2,2),{}),'128x112 PdS1':((128,112,2,2,1,True,False,False,1,2,2),{}),'64x128 dKV swapped 1wg':((64,128,2,2,2,True,True,False,1,2,1),s),'64x128 NdKV1 1wg':((64,128,2,2,2,True,False,False,1,1,1),s),'64x128 MSdP2 1wg':((64,128,2,2,2,True,False,False,2,2,1),s)}
#     sys.argv=['x','--reps','40','--json','/tmp/t3.json']; b.main()" ... cp /tmp/t3.json $OUT/
