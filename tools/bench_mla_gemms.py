"""
Multi-Head Latent Attention's projection GEMMs at the trainer's shapes, each on cuBLAS (what
PyTorch's matmul runs) and on quack (its heuristic tile and its autotuned one): the forward's
queries, latent and key slots, and the backward's input and weight gradients. MLA's step is longer
than d12's, and these small-K or small-N GEMMs are where its projections differ; this shows, GEMM
by GEMM, whether another library runs one faster. Each figure is the median over reps of a batch
of back-to-back calls timed with CUDA events, divided by the batch: the host's launches overlap
the GPU's work, as under CUDA graphs in a training step. bf16 operands, bf16 output.

    python tools/bench_mla_gemms.py                       # d12_flash_mla, B=32, T=1024
    python tools/bench_mla_gemms.py --json gemms.json
    python tools/bench_mla_gemms.py --match "key slots"   # only those three
"""

import argparse
import datetime
import json
import sys
from pathlib import Path

import torch
from cuda_timing import batch_ms, exit_unless_quack_runs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import train_gpt2_mod as m  # noqa: E402


def mla_gemms(config, rows, device="cuda"):
    """name -> (A, B, out or None): each GEMM computes A @ B, into out (accumulating) where given.
    The operands are random, laid out as the trainer's are: weights (out, in) row-major, so the
    forward multiplies by their transposes; a weight's gradient is the output gradient's transpose
    times the input. On the meta device, for the names alone."""
    C, H, rank = config.n_embd, config.n_head, config.kv_lora_rank
    qk = config.qk_nope_head_dim + config.qk_rope_head_dim
    slot = qk + config.v_head_dim  # a head's [k_nope ; k_rope ; v]
    latent_width = rank + config.qk_rope_head_dim

    def t(*shape):
        return torch.randn(*shape, device=device, dtype=torch.bfloat16) / shape[-1] ** 0.5

    x, w_q, w_latent, w_slots = t(rows, C), t(H * qk, C), t(latent_width, C), t(H * slot, latent_width)
    latent, grad_kv, grad_q, grad_latent = t(rows, latent_width), t(rows, H * slot), t(rows, H * qk), t(rows, latent_width)
    return {
        f"forward: queries, x @ w_q.T ({rows}x{C} @ {C}x{H * qk})": (x, w_q.T, None),
        f"forward: latent, x @ w_latent.T ({C}x{latent_width})": (x, w_latent.T, None),
        f"forward: key slots, latent @ w_slots.T ({latent_width}x{H * slot})": (latent, w_slots.T, None),
        f"forward: queries and latent joined ({C}x{H * qk + latent_width})": (x, torch.cat((w_q, w_latent)).T, None),
        f"backward: key slots' input gradient ({H * slot}x{latent_width})": (grad_kv, w_slots, None),
        f"backward: key slots' weight gradient ({H * slot}x{rows} @ {rows}x{latent_width})": (grad_kv.T, latent, None),
        f"backward: latent's input gradient ({latent_width}x{C})": (grad_latent, w_latent, None),
        f"backward: queries' input gradient, added onto the latent's ({H * qk}x{C})": (grad_q, w_q, torch.zeros(rows, C, device=device, dtype=torch.bfloat16)),
        f"backward: queries' weight gradient ({H * qk}x{rows} @ {rows}x{C})": (grad_q.T, x, None),
        f"backward: latent's weight gradient ({latent_width}x{rows} @ {rows}x{C})": (grad_latent.T, x, None),
    }


def cublas(a, b, out):
    return (lambda: out.addmm_(a, b)) if out is not None else (lambda: a @ b)


def quack(a, b, out, tuned, split_k=1):
    from quack.gemm_interface import gemm, gemm_add_inplace

    if out is not None:
        return lambda: gemm_add_inplace(a, b, out, tuned=tuned)
    return lambda: gemm(a, b, tuned=tuned, split_k=split_k)


def quack_rope_epilogue(a, b):
    """The trainer's forward projection: quack's GEMM with RoPE in its epilogue (its cost does not
    depend on the angles, so every column turns by the same made-up frequency)."""
    positions, turns = m.row_positions(1, a.size(0), a.device), torch.full((b.size(1),), 1e-3, device=a.device)
    weight = b.T
    return lambda: torch.ops.train_gpt2_mod.quack_linear_rope(a, weight, None, positions, turns)


def libraries(name, a, b, out):
    """The ways to run one GEMM: name -> callable."""
    ways = {"cuBLAS": cublas(a, b, out), "quack, heuristic tile": quack(a, b, out, tuned=False), "quack, autotuned": quack(a, b, out, tuned=True)}
    if name.startswith("forward: queries") or name.startswith("forward: latent"):
        ways["quack, RoPE in the epilogue (the trainer's)"] = quack_rope_epilogue(a, b)
    if out is None and a.size(1) > 8 * max(a.size(0), b.size(1)):  # a weight's gradient: long K, small output
        ways["quack, autotuned with split-K"] = quack(a, b, out, tuned=True, split_k=None)
    return ways


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="d12_flash_mla", help="a named config with use_flash_mla")
    p.add_argument("--tokens", type=int, default=32 * 1024, help="rows: batch size times sequence length")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--calls", type=int, default=20, help="back-to-back calls in each timed batch")
    p.add_argument("--match", default="", help="only the GEMMs whose name contains this")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    config = m.MODEL_CONFIGS.get(args.model)
    if config is None or not config.use_flash_mla:
        m.usage_error(f"--model {args.model}: not a named config with use_flash_mla")
    if min(args.tokens, args.reps, args.calls) < 1:
        m.usage_error("--tokens, --reps and --calls must be at least 1")
    if not any(args.match in name for name in mla_gemms(config, args.tokens, "meta")):
        m.usage_error(f"--match {args.match!r}: no GEMM's name contains it")
    exit_unless_quack_runs(m.quack_unavailable)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.model}, {args.tokens} rows, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n")
    print("| GEMM | library | ms | TFLOP/s |\n| --- | --- | --- | --- |")
    results = []
    gemms = {name: operands for name, operands in mla_gemms(config, args.tokens).items() if args.match in name}
    for name, (a, b, out) in gemms.items():
        flop = 2 * a.size(0) * a.size(1) * b.size(1)
        for library, fn in libraries(name, a, b, out).items():
            try:
                ms = batch_ms(fn, args.reps, args.calls)
            except Exception as exc:  # a tile quack cannot build here: say so and go on
                print(f"| {name} | {library} | failed: {str(exc).strip().splitlines()[0][:120]} | |", flush=True)
                continue
            print(f"| {name} | {library} | {ms:.4f} | {flop / ms / 1e9:.0f} |", flush=True)
            results.append({"gemm": name, "library": library, "ms": ms, "tflops": flop / ms / 1e9})
    if args.json:
        Path(args.json).write_text(json.dumps({"device": torch.cuda.get_device_name(), "rows": args.tokens, "results": results}, indent=1))


if __name__ == "__main__":
    main()
