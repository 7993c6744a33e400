"""
GPT-2's MLP, forward and backward, at the trainer's shapes, per kernel: the trainer's QuackMLP
(GELU's derivative and c_fc's bias gradient in one GEMM epilogue, the GELU's output kept from the
forward), quack's own mlp_func (which sums that bias gradient in a pass of its own and computes
the GELU's output again) and PyTorch's, eagerly and under torch.compile. Median of CUDA-event
timings after warm-up, bf16 autocast, fp32 weights as the trainer keeps them.

    python tools/bench_quack_mlp.py                          # 32 x 1024 tokens, d12's width
    python tools/bench_quack_mlp.py --tokens 16384 --n_embd 1024
"""

import argparse
import datetime
import sys
from pathlib import Path

import torch
from cuda_timing import exit_unless_quack_runs, median_ms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import train_gpt2_mod as m  # noqa: E402


class QuackMlpFunc(m.TorchMLP):
    """quack's mlp_func as the trainer ran it up to 1.10.4: biases cast as autocast casts them."""

    name = "quack mlp_func"

    def __call__(self, mlp, x):
        from quack.mlp import mlp_func

        biases = [b.to(torch.bfloat16) for b in (mlp.c_fc.bias, mlp.c_proj.bias)]
        return mlp_func(x, mlp.c_fc.weight, mlp.c_proj.weight, "gelu_tanh_approx", bias1=biases[0], bias2=biases[1])


def forward_backward(run, x, grad):
    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = run(x)
        out.backward(grad)

    return step


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=32 * 1024, help="rows: batch size times sequence length")
    p.add_argument("--n_embd", type=int, default=768)
    p.add_argument("--reps", type=int, default=50)
    args = p.parse_args()
    if min(args.tokens, args.n_embd, args.reps) < 1 or args.n_embd % 8:
        m.usage_error("--tokens and --reps must be at least 1, --n_embd a positive multiple of 8")
    exit_unless_quack_runs(m.quack_unavailable)
    config = m.GPTConfig(n_layer=1, n_head=args.n_embd // 64 or 1, n_embd=args.n_embd)
    mlp = m.MLP(config).cuda()
    x = torch.randn(args.tokens, args.n_embd, device="cuda", requires_grad=True)
    grad = torch.randn(args.tokens, args.n_embd, device="cuda", dtype=torch.bfloat16)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.tokens} tokens, n_embd {args.n_embd}, {datetime.date.today()}\n")
    print("| kernel | eager fwd+bwd ms | compiled fwd+bwd ms |\n| --- | --- | --- |")
    for kernel in (m.QuackMLP(), QuackMlpFunc(), m.TorchMLP()):
        mlp.kernel = kernel
        times = []
        for run in (mlp, torch.compile(mlp, dynamic=False)):
            torch._dynamo.reset()
            times.append(median_ms(forward_backward(run, x, grad), reps=args.reps))
            mlp.zero_grad(set_to_none=True)
        print(f"| {kernel.name} | {times[0]:.3f} | {times[1]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
