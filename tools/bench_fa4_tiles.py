"""
FlashAttention-4's SM90 tile configurations at the trainer's attention shapes: FA4's own choice, the
candidates this file lists and the trainer's FLASH_ATTN4_SM90_FORWARD_TILES, forward and backward
timed apart, on the layouts the trainer hands FA4 (MLA's keys and values as views of one packed
tensor, their gradients written into one). FA4 picks its Hopper tiles by head dim alone; this shows
whether another tile runs MLA's 96/64 faster. Median of CUDA-event timings after warm-up, bf16,
causal. Each call is timed from an idle GPU, so the figures include the host's launch of FA4, which
CUDA graphs take out of a training step: compare rows with each other, and take a step's kernel
times from tools/profile_train.py. Needs a Hopper GPU and flash-attn-4. A candidate that cannot be
built says why.

    python tools/bench_fa4_tiles.py                       # B=32, T=1024, 12 heads
    python tools/bench_fa4_tiles.py --json tiles.json
"""

import argparse
import datetime
import json
import sys
from pathlib import Path

import torch
from cuda_timing import median_ms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import train_gpt2_mod as m  # noqa: E402

# BwdConfig fields, in order: m_block_size, n_block_size, num_stages_Q, num_stages_dO,
# num_stages_PdS, SdP_swapAB, dKV_swapAB, dQ_swapAB, AtomLayoutMSdP, AtomLayoutNdKV, AtomLayoutMdQ
ONE_DQ_WARP_GROUP = {"dQ_single_wg": True}  # FA4's own at head dims 65-96
BACKWARD_CANDIDATES = {
    "64x128, dQ in both warp groups": ((64, 128, 2, 2, 2, True, False, False, 1, 2, 1), {}),
    "64x128, dQ atoms 2": ((64, 128, 2, 2, 2, True, False, False, 1, 2, 2), {}),
    "64x128, one P/dS stage": ((64, 128, 2, 2, 1, True, False, False, 1, 2, 1), ONE_DQ_WARP_GROUP),
    "64x128, one dO and P/dS stage": ((64, 128, 2, 1, 1, True, False, False, 1, 2, 1), ONE_DQ_WARP_GROUP),
    "64x128, SdP unswapped": ((64, 128, 2, 2, 2, False, False, False, 1, 2, 1), ONE_DQ_WARP_GROUP),
    "64x128, dKV swapped": ((64, 128, 2, 2, 2, True, True, False, 1, 2, 1), ONE_DQ_WARP_GROUP),
    "64x128, SdP atoms 2": ((64, 128, 2, 2, 2, True, False, False, 2, 2, 1), ONE_DQ_WARP_GROUP),
    "64x128, dKV atoms 1": ((64, 128, 2, 2, 2, True, False, False, 1, 1, 1), ONE_DQ_WARP_GROUP),
    "64x112": ((64, 112, 2, 2, 2, True, False, False, 1, 2, 1), ONE_DQ_WARP_GROUP),
    "64x160": ((64, 160, 2, 2, 2, True, False, False, 1, 2, 1), ONE_DQ_WARP_GROUP),
    "64x192": ((64, 192, 2, 2, 2, True, False, False, 1, 2, 1), ONE_DQ_WARP_GROUP),
    "80x128, dQ swapped": ((80, 128, 2, 2, 2, True, False, True, 1, 2, 1), {}),
    "128x128 (head dim 64's)": ((128, 128, 2, 2, 2, True, False, False, 1, 2, 2), {}),
    "128x128, one P/dS stage": ((128, 128, 2, 2, 1, True, False, False, 1, 2, 2), {}),
    "128x128, one dO and P/dS stage": ((128, 128, 2, 1, 1, True, False, False, 1, 2, 2), {}),
    "128x128, one stage each": ((128, 128, 1, 1, 1, True, False, False, 1, 2, 2), {}),
    "128x112, one P/dS stage": ((128, 112, 2, 2, 1, True, False, False, 1, 2, 2), {}),
    "128x96": ((128, 96, 2, 2, 2, True, False, False, 1, 2, 2), {}),
    "128x64": ((128, 64, 2, 2, 2, True, False, False, 1, 2, 2), {}),
}
# FwdConfig fields: m_block_size, n_block_size, mma_pv_is_rs, intra_wg_overlap
FORWARD_CANDIDATES = {
    "128x128, P @ V from registers": (128, 128, True, True),
    "128x128, P @ V from registers, no overlap": (128, 128, True, False),
    "128x128": (128, 128, False, True),
    "128x96, P @ V from registers": (128, 96, True, True),
    "128x112, P @ V from registers": (128, 112, True, True),
    "128x144, P @ V from registers": (128, 144, True, True),
    "128x160, P @ V from registers": (128, 160, True, True),
    "128x176, P @ V from registers": (128, 176, True, True),
    "128x192, P @ V from registers": (128, 192, True, True),
    "192x112": (192, 112, False, True),
    "192x144": (192, 144, False, True),
}


# FA4's function that picks the tiles of each pass, and the pass whose kernels they build
TILE_CHOOSERS = {"forward": ("_tile_size_fwd_sm90", "_flash_attn_fwd"), "backward": ("_tile_size_bwd_sm90", "_flash_attn_bwd")}


class TileOverride:
    """FA4's SM90 tile choice for one pass replaced by config while in the with block (None keeps
    FA4's own), and that pass's compiled kernels dropped on entry and exit: its compile key leaves
    out some of the config's fields (num_stages_PdS), so a cached kernel could be another tile's.
    The trainer's FLASH_ATTN4_SM90_FORWARD_TILES is set aside in the block unless trainers_table
    says to keep it: the trainer hands FA4 that table's tile, and FA4 then consults no chooser."""

    def __init__(self, kind, config=None, trainers_table=False):
        self.name, self.compiled = TILE_CHOOSERS[kind]
        self.config, self.trainers_table = config, trainers_table

    def clear(self):
        getattr(m.flash_attn4, self.compiled).compile_cache.clear()

    def __enter__(self):
        self.original, self.table = getattr(m.flash_attn4, self.name), m.FLASH_ATTN4_SM90_FORWARD_TILES
        if self.config is not None:
            setattr(m.flash_attn4, self.name, lambda *args, **kwargs: self.config)
        if not self.trainers_table:
            m.FLASH_ATTN4_SM90_FORWARD_TILES = {}
        self.clear()

    def __exit__(self, *exc):
        setattr(m.flash_attn4, self.name, self.original)
        m.FLASH_ATTN4_SM90_FORWARD_TILES = self.table
        self.clear()


def mla_inputs(B, T, H, qk_dim, v_dim):
    """q, the packed keys and values, the output's gradient, and buffers for the gradients."""
    q = torch.randn(B, T, H, qk_dim, device="cuda", dtype=torch.bfloat16)
    kv = torch.randn(B, T, H, qk_dim + v_dim, device="cuda", dtype=torch.bfloat16)
    grad_out = torch.randn(B, T, H, v_dim, device="cuda", dtype=torch.bfloat16)
    return q, kv, grad_out, torch.empty_like(q), torch.empty_like(kv)


def time_pair(q, kv, grad_out, grad_q, grad_kv, reps):
    """(forward ms, backward ms) of FA4 on these inputs, as the trainer's kv-packed ops call it."""
    k, v = m.split_kv(kv, q.size(-1))
    forward = median_ms(lambda: m.flash_attn4_attend(q, k, v, 0), reps)
    out, lse = m.flash_attn4_attend(q, k, v, 0)
    backward = median_ms(lambda: m.flash_attn4_attend_backward(grad_out, q, k, v, out, lse, 0, grad_q, *m.split_kv(grad_kv, q.size(-1))), reps)
    return forward, backward


def run_candidate(label, override, inputs, reps, rows):
    try:
        with override:
            forward, backward = time_pair(*inputs, reps)
    except Exception as e:  # a config the kernel cannot build (shared memory, registers, layout)
        reason = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        print(f"| {label} | fails: {reason[:100]} | |", flush=True)
        rows.append({"config": label, "error": str(e)[:300]})
        return
    print(f"| {label} | {forward:.3f} | {backward:.3f} |", flush=True)
    rows.append({"config": label, "forward_ms": forward, "backward_ms": backward})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq_len", type=int, default=1024)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--json", default="", help="write the table's rows here too")
    args = p.parse_args()
    if min(args.batch, args.seq_len, args.heads, args.reps) < 1:
        m.usage_error("--batch, --seq_len, --heads and --reps must be at least 1")
    if not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9 or m.flash_attn4 is None:
        sys.exit("error: this times FlashAttention-4's Hopper tiles; it needs an sm90 GPU and flash-attn-4")
    B, T, H = args.batch, args.seq_len, args.heads
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, bf16, causal, B={B}, T={T}, H={H}, {datetime.date.today()}\n")
    print("| head dims, tile | forward ms | backward ms |\n| --- | --- | --- |")
    rows = []
    run_candidate("64/64 (d12's head dims), FA4's own", TileOverride("forward"), mla_inputs(B, T, H, 64, 64), args.reps, rows)
    mla = mla_inputs(B, T, H, 96, 64)
    run_candidate("96/64 (MLA), FA4's own", TileOverride("forward"), mla, args.reps, rows)
    for label, (fields, extra) in BACKWARD_CANDIDATES.items():
        config = m.flash_attn4.BwdConfig(*fields, **extra)
        run_candidate(f"96/64 backward {label}", TileOverride("backward", config), mla, args.reps, rows)
    for label, fields in FORWARD_CANDIDATES.items():
        config = m.flash_attn4.FwdConfig(*fields)
        run_candidate(f"96/64 forward {label}", TileOverride("forward", config), mla, args.reps, rows)
    run_candidate("96/64 forward, the trainer's FLASH_ATTN4_SM90_FORWARD_TILES", TileOverride("forward", trainers_table=True), mla, args.reps, rows)
    run_candidate("96/64 (MLA), FA4's own, again", TileOverride("backward"), mla, args.reps, rows)  # the drift over the run
    if args.json:
        Path(args.json).write_text(json.dumps({"device": torch.cuda.get_device_name(), "shape": [B, T, H], "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
