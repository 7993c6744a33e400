"""
Peak memory and fwd+bwd time of causal attention against sliding-window attention.

Per layer: the attention kernel alone on (B, T, 12 heads, 64) bf16 q, k, v, forward and backward.
Whole model: d12 (12 layers, every layer local for the window rows), forward and backward in bf16
autocast, eager. B * T is held at --tokens, so each row does the same work outside attention.

Variants: causal on SDPA (the model's default kernel); causal on flash-attn (the same kernel family
as the window); the window on flash-attn's native window_size; the window on the flex_attention
fallback (compiled flex_attention with a cached block mask). "Peak extra" is the peak allocated
memory during fwd+bwd minus what was allocated before (inputs, or parameters): activations, outputs,
gradients, kernel workspace and masks.

    python tools/sliding_window_memory.py --window 1024 --json out.json      # on a CUDA GPU
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


def time_and_peak(fn, reps):
    """Median ms per call over reps timed calls (after warm-up), and the peak extra bytes of one call."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    return median_ms(fn, reps, warmup=0), peak


class Variant:
    """One way of running attention: a window (0 = causal) and the --attn_backend that picks its
    kernel (flash_attn: flash-attn; sdpa: SDPA for causal, flex_attention for the window)."""

    def __init__(self, name, window, backend):
        self.name, self.window, self.backend = name, window, backend

    def kernel(self):
        needs = m.KernelNeeds(self.window, 64, 64, "cuda", torch.cuda.get_device_capability(), torch.bfloat16)
        return m.choose_kernel(self.backend, needs)


def layer_row(variant, T, B, reps):
    q, k, v = (torch.randn(B, T, 12, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    grad = torch.randn_like(q)
    kernel = variant.kernel()

    def step():
        out = kernel(q, k, v)
        out.backward(grad)
        q.grad = k.grad = v.grad = None

    return time_and_peak(step, reps)


def model_row(variant, T, B, reps):
    config = m.GPTConfig(block_size=T, sliding_window=variant.window)
    model = m.GPT(config).cuda().set_kernels(variant.backend, "cuda", torch.bfloat16)
    x = torch.randint(0, m.GPT2_VOCAB_SIZE, (B, T), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = model(x, x)
        loss.backward()
        model.zero_grad(set_to_none=True)

    result = time_and_peak(step, reps)
    del model
    torch.cuda.empty_cache()
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--window", type=int, default=1024, help="sliding window W")
    p.add_argument("--seq_lens", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    p.add_argument("--tokens", type=int, default=16384, help="B * T for every row")
    p.add_argument("--reps", type=int, default=20, help="timed repetitions per row (median)")
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args()
    if min(args.window, *args.seq_lens, args.tokens, args.reps) < 1:
        m.usage_error("--window, --seq_lens, --tokens and --reps must be at least 1")
    if not torch.cuda.is_available():
        sys.exit("error: this measures GPU memory and time; it needs a CUDA GPU")
    variants = [Variant("causal, SDPA", 0, "sdpa"), Variant(f"window {args.window}, flex_attention", args.window, "sdpa")]
    if m.flash_attn_func is None:
        print("flash-attn is not installed: measuring only causal SDPA and the flex_attention fallback", file=sys.stderr)
    else:
        variants[1:1] = [Variant("causal, flash-attn", 0, "flash_attn"), Variant(f"window {args.window}, flash-attn", args.window, "flash_attn")]
    rows = []
    for scope, measure in (("layer", layer_row), ("model", model_row)):
        for T in args.seq_lens:
            B = max(1, args.tokens // T)
            for variant in variants:
                ms, peak = measure(variant, T, B, args.reps)
                rows.append({"scope": scope, "T": T, "B": B, "variant": variant.name, "fwd_bwd_ms": ms, "peak_extra_mib": peak / 2**20})
                print(f"{scope} T={T} B={B} {variant.name}: {ms:.3f} ms, peak extra {peak / 2**20:.1f} MiB", file=sys.stderr, flush=True)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, bf16, W={args.window}, B*T={args.tokens}, {datetime.date.today()}\n")
    for scope, title in (("layer", "One attention layer (12 heads x 64), fwd+bwd"), ("model", "d12, whole model, fwd+bwd (eager)")):
        print(f"{title}\n\n| T | B | variant | fwd+bwd ms | peak extra MiB |\n| --- | --- | --- | --- | --- |")
        for r in rows:
            if r["scope"] == scope:
                print(f"| {r['T']} | {r['B']} | {r['variant']} | {r['fwd_bwd_ms']:.3f} | {r['peak_extra_mib']:.1f} |")
        print()
    print("block masks built:", ", ".join(f"T={t} W={w}" for t, w, _ in m._block_masks) or "none")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": torch.cuda.get_device_name(), "window": args.window, "tokens": args.tokens, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
