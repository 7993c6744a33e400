"""
Attention kernels, forward and forward+backward, per backend, at the d12 shapes of MHA (head dims
64/64) and MLA (q/k 96, v 64): SDPA with each of its backends, and the trainer's flash-attn kernels (FA2, with V padded
for MLA; FA3 where installed on Hopper and it takes the head dims). Median of CUDA-event timings after warm-up, bf16, causal.

    python tools/bench_attention.py                       # B=16, T=1024, 12 heads
    python tools/bench_attention.py --batch 8 --seq_len 2048
"""

import argparse
import datetime
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from cuda_timing import median_ms
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import train_gpt2_mod as m  # noqa: E402


def sdpa(backend):
    def run(q, k, v):
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True).transpose(1, 2)

    return run


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq_len", type=int, default=1024)
    p.add_argument("--heads", type=int, default=12)
    args = p.parse_args()
    if min(args.batch, args.seq_len, args.heads) < 1:
        m.usage_error("--batch, --seq_len and --heads must be at least 1")
    if not torch.cuda.is_available():
        sys.exit("error: this times CUDA kernels; it needs a CUDA GPU")
    kernels = {
        "SDPA (PyTorch's choice)": lambda q, k, v: F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True).transpose(1, 2),
        "SDPA cuDNN": sdpa(SDPBackend.CUDNN_ATTENTION),
        "SDPA flash": sdpa(SDPBackend.FLASH_ATTENTION),
        "SDPA mem-efficient": sdpa(SDPBackend.EFFICIENT_ATTENTION),
    }
    flash_kernels = [m.FlashAttention3, m.FlashAttention2]  # the kernel layer's own, as the trainer runs them
    B, T, H = args.batch, args.seq_len, args.heads
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, bf16, causal, B={B}, T={T}, H={H}, {datetime.date.today()}\n")
    print("| head dims (q/k, v) | kernel | fwd ms | fwd+bwd ms |\n| --- | --- | --- | --- |")
    for qk_dim, v_dim, label in ((64, 64, "64/64 (MHA)"), (96, 64, "96/64 (MLA)")):
        q, k = (torch.randn(B, T, H, qk_dim, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
        v = torch.randn(B, T, H, v_dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        grad = torch.randn(B, T, H, v_dim, device="cuda", dtype=torch.bfloat16)
        needs = m.KernelNeeds(0, qk_dim, v_dim, "cuda", torch.cuda.get_device_capability(), torch.bfloat16)
        runnable = {kernel.name: kernel(0) for kernel in flash_kernels if kernel.unavailable(needs) is None}
        for name, kernel in (kernels | runnable).items():
            try:
                with torch.no_grad():
                    fwd = median_ms(lambda: kernel(q, k, v), reps=50)
                both = median_ms(lambda: torch.autograd.grad(kernel(q, k, v), (q, k, v), grad), reps=50)
            except RuntimeError as e:  # a backend that does not take these dims
                print(f"| {label} | {name} | not supported ({str(e).splitlines()[0][:60]}) | |")
                continue
            print(f"| {label} | {name} | {fwd:.3f} | {both:.3f} |", flush=True)


if __name__ == "__main__":
    main()
